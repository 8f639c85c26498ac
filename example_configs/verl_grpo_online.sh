#!/usr/bin/env bash
# Spatial-SSRL GRPO with verl 0.9.1 on tasks generated on the fly: no `ssrl build`, fresh samples every epoch.
# The paper's settings (verl_grpo.overrides) plus verl_grpo_online.overrides: verl's data.custom_cls loads
# data_builders.online.OnlineSpatialDataset, which draws each prompt from your images when the dataloader asks.
#
#   bash verl_grpo_online.sh [key=value ...]
#
#   key=value  any Hydra override, applied last. Sources and sizes are `ssrl build` keys under data.ssrl.build
#              (use ++), e.g.
#                ++data.ssrl.build.rgb=[/data/coco/train2017] '++data.ssrl.build.rgbd=[diode:/data/diode/train]'
#                ++data.ssrl.build.num_samples=78000 ++data.ssrl.config=/abs/build.yaml
#              no source: the built-in demo corpus. trainer.n_gpus_per_node=4 etc. as for verl_grpo.sh.
#   MODEL      env, default Qwen/Qwen2.5-VL-7B-Instruct
#   PYTHON     env, default python3 (the interpreter that has verl and spatial-ssrl installed)
#   SSRL_DRY_RUN=1  print the command, one argument per line, instead of running it
#
# Sample i of epoch e is the same on every machine and for any data.dataloader_num_workers; train and validation
# draw from disjoint sources (the split rule of `ssrl build`); validation is the same fixed set every time.
set -euo pipefail

if ! command -v ssrl >/dev/null 2>&1; then
    echo "verl_grpo_online.sh: 'ssrl' not found: pip install spatial-ssrl (or pip install -e .) in this environment" >&2
    exit 1
fi
eval "$(ssrl paths --shell)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIGS="${SSRL_EXAMPLE_CONFIGS:-$HERE}"
MODEL="${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"
PYTHON="${PYTHON:-python3}"
for value in "$MODEL" "$SSRL_REWARD_VERL"; do
    if [[ "$value" == *"'"* || "$value" == *\\* ]]; then
        echo "verl_grpo_online.sh: cannot pass a value with a quote or backslash to Hydra: $value" >&2
        exit 1
    fi
done

# One argument per line of each file; the placeholders of verl_grpo.overrides are filled in, the data files name
# the split each dataset serves.
read_overrides() {
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
        line="${line//'${MODEL}'/"$MODEL"}"
        line="${line//'${TRAIN_FILES}'/"'ssrl://train'"}"
        line="${line//'${VAL_FILES}'/"'ssrl://val'"}"
        line="${line//'${SSRL_REWARD_VERL}'/"$SSRL_REWARD_VERL"}"
        if [[ "$line" == *'${'* ]]; then
            echo "verl_grpo_online.sh: unknown placeholder in $1: $line" >&2
            exit 1
        fi
        overrides+=("$line")
    done <"$1"
}
overrides=()
read_overrides "$CONFIGS/verl_grpo.overrides"
read_overrides "$CONFIGS/verl_grpo_online.overrides"

cmd=("$PYTHON" -m verl.trainer.main_ppo "${overrides[@]}" "$@")

if [[ "${SSRL_DRY_RUN:-0}" != 0 ]]; then
    printf '%s\n' "${cmd[@]}"
    exit 0
fi
exec "${cmd[@]}"
