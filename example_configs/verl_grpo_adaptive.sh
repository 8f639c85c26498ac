#!/usr/bin/env bash
# Spatial-SSRL GRPO with verl 0.9.1 on tasks generated on the fly, with an adaptive curriculum: each task's
# difficulty level follows its rolling training accuracy (up at >= 0.75, back down below 0.35).
# The paper's settings (verl_grpo.overrides), the on-the-fly dataset (verl_grpo_online.overrides: data.custom_cls
# = data_builders.online.OnlineSpatialDataset) and verl_grpo_adaptive.overrides: the data.ssrl.adaptive section,
# verl's V1 custom sampler data_builders.adaptive.AdaptiveReplayBuffer (feeds each step's accuracies back and logs
# curriculum/level_<task>), data.dataloader_num_workers=0.
#
#   bash verl_grpo_adaptive.sh [key=value ...]
#
#   key=value  any Hydra override, applied last. Sources and sizes are `ssrl build` keys under data.ssrl.build
#              (use ++), e.g.
#                ++data.ssrl.build.rgb=[/data/coco/train2017] '++data.ssrl.build.rgbd=[diode:/data/diode/train]'
#                ++data.ssrl.build.num_samples=78000 ++data.ssrl.config=/abs/build.yaml
#              no source: the built-in demo corpus. Curriculum settings: ++data.ssrl.adaptive.<key> (up, down,
#              window, min_samples, start, metric). trainer.n_gpus_per_node=4 etc. as for verl_grpo.sh.
#   MODEL      env, default Qwen/Qwen2.5-VL-7B-Instruct
#   PYTHON     env, default python3 (the interpreter that has verl and spatial-ssrl installed)
#   SSRL_DRY_RUN=1  print the command, one argument per line, instead of running it
#
# Sample i of epoch e is drawn at its task's level when the trainer asks for it: the rows are a deterministic
# function of the seed and the accuracies observed so far. The levels, rolling windows and epoch counts are saved
# in verl's checkpoint (data.pt) and restored on resume. Validation is a fixed set taking every level in turn.
set -euo pipefail

if ! command -v ssrl >/dev/null 2>&1; then
    echo "verl_grpo_adaptive.sh: 'ssrl' not found: pip install spatial-ssrl (or pip install -e .) in this environment" >&2
    exit 1
fi
eval "$(ssrl paths --shell)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIGS="${SSRL_EXAMPLE_CONFIGS:-$HERE}"

# verl_grpo_online.sh with the lines of verl_grpo_adaptive.overrides before the user's overrides (last wins).
adaptive=()
while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
    adaptive+=("$line")
done <"$CONFIGS/verl_grpo_adaptive.overrides"
exec bash "$CONFIGS/verl_grpo_online.sh" "${adaptive[@]}" "$@"
