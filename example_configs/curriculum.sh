#!/usr/bin/env bash
# A static curriculum (easy to hard) with EasyR1 or verl: the training rows of a curriculum build are stored in
# stage order, so the trainer only has to read them in order.
#
#   bash curriculum.sh easyr1|verl DATA_DIR [key=value ...]
#
#   DATA_DIR   built with a curriculum, e.g.
#                ssrl build --out DATA_DIR --curriculum "levels=1,2,3 batch=256" ...
#              where batch is the trainer's prompts per step (EasyR1 data.rollout_batch_size, verl
#              data.train_batch_size: 256 in easyr1_grpo.yaml and verl_grpo.overrides)
#   key=value  passed on to easyr1_grpo.sh / verl_grpo.sh (MODEL, PYTHON, CONFIG and SSRL_DRY_RUN=1 work as there)
#
# It runs easyr1_grpo.sh or verl_grpo.sh beside this script with the training data read in order (EasyR1
# data.shuffle=false, verl data.shuffle=False), after printing the stages from DATA_DIR/manifest.json (rows and
# trainer steps). One epoch walks the stages once; a second epoch would start again at the easiest stage, so set
# the run's length to one epoch of steps (the last stage's end step) or accept the restart.
set -euo pipefail

if ! command -v ssrl >/dev/null 2>&1; then
    echo "curriculum.sh: 'ssrl' not found: pip install spatial-ssrl (or pip install -e .) in this environment" >&2
    exit 1
fi
eval "$(ssrl paths --shell)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIGS="${SSRL_EXAMPLE_CONFIGS:-$HERE}"

TRAINER="${1:-}"
DATA="${2:-}"
if [[ "$TRAINER" != easyr1 && "$TRAINER" != verl ]] || [[ -z "$DATA" ]]; then
    echo "curriculum.sh: usage: bash curriculum.sh easyr1|verl DATA_DIR [key=value ...]" >&2
    exit 1
fi
shift 2
if [[ ! -f "$DATA/manifest.json" ]]; then
    echo "curriculum.sh: no $DATA/manifest.json: build the data first, e.g. ssrl build --out $DATA --curriculum \"levels=1,2,3\"" >&2
    exit 1
fi
# The stages, or a one-line refusal for data built without a curriculum (shuffle off would then buy nothing).
"${PYTHON:-python3}" - "$DATA/manifest.json" >&2 <<'PY'
import json, sys
curriculum = json.load(open(sys.argv[1])).get("curriculum")
if not curriculum:
    sys.exit(f"curriculum.sh: {sys.argv[1]} has no curriculum: build with ssrl build --curriculum \"levels=1,2,3\"")
batch = curriculum["batch"]
for s in curriculum["stages"]:
    print(f"curriculum.sh: stage {s['stage']} (level {s['level']}): rows {s['rows'][0]}-{s['rows'][1]}, "
          f"steps {s['steps'][0]}-{s['steps'][1]} at {batch} prompts per step")
PY

if [[ "$TRAINER" == easyr1 ]]; then
    exec bash "$CONFIGS/easyr1_grpo.sh" "$DATA" data.shuffle=false "$@"
fi
exec bash "$CONFIGS/verl_grpo.sh" "$DATA" data.shuffle=False "$@"
