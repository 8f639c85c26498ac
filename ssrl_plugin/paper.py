"""Numbers from the Spatial-SSRL paper and its released data that our defaults follow."""

BUILTIN_ORDER = ("shuffle", "flip", "crop", "depth", "position")
# Tasks on sequences of frames (videos, posed RGB-D sequences): ours, not the paper's (it names video as future work).
SEQUENCE_ORDER = ("temporal_order", "camera_motion", "cross_view")

# Task counts of the released Spatial-SSRL-81k set (81,053 samples): the default mix is proportional.
PAPER_COUNTS = {"shuffle": 16_028, "flip": 4_005, "crop": 20_200, "depth": 20_620, "position": 20_200}
PAPER_TOTAL = sum(PAPER_COUNTS.values())
