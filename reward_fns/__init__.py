# reward functions (issue 3)
