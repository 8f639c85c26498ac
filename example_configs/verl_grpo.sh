#!/usr/bin/env bash
# Spatial-SSRL GRPO with verl 0.9.1 (volcengine/verl) for Qwen2.5-VL, the paper's settings, from any working
# directory. The Hydra overrides live in verl_grpo.overrides (one per line), so tests can compose verl's own
# config with exactly what this script passes.
#
#   bash verl_grpo.sh [DATA_DIR] [key=value ...]
#
#   DATA_DIR   output of `ssrl build` (default: $DATA, else ./demo_data); reads DATA_DIR/verl/{train,val}-*.parquet
#   key=value  any Hydra override, applied last, e.g. trainer.n_gpus_per_node=4 trainer.logger=['console']
#              large pictures (5-image crop prompts over 4096 tokens): ++data.mm_processor_kwargs.max_pixels=501760
#   MODEL      env, default Qwen/Qwen2.5-VL-7B-Instruct
#   OVERRIDES  env, default verl_grpo.overrides beside this script (verl_grpo_qwen3vl.overrides for Qwen3-VL-4B,
#              with MODEL=Qwen/Qwen3-VL-4B-Instruct)
#   PYTHON     env, default python3 (the interpreter that has verl installed)
#   SSRL_DRY_RUN=1  print the command, one argument per line, instead of running it
set -euo pipefail

if ! command -v ssrl >/dev/null 2>&1; then
    echo "verl_grpo.sh: 'ssrl' not found: pip install spatial-ssrl (or pip install -e .) in this environment" >&2
    exit 1
fi
# Absolute paths of the reward file and of this folder: nothing here is relative.
eval "$(ssrl paths --shell)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIGS="${SSRL_EXAMPLE_CONFIGS:-$HERE}"
OVERRIDES="${OVERRIDES:-$CONFIGS/verl_grpo.overrides}"
if [[ ! -f "$OVERRIDES" ]]; then
    echo "verl_grpo.sh: no overrides file $OVERRIDES" >&2
    exit 1
fi

DATA="${DATA:-demo_data}"
if [[ $# -gt 0 && "$1" != *=* ]]; then
    DATA="$1"
    shift
fi
if [[ ! -d "$DATA/verl" ]]; then
    echo "verl_grpo.sh: no $DATA/verl folder: build the data first, e.g. ssrl build --out $DATA" >&2
    exit 1
fi
DATA="$(cd "$DATA" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"
PYTHON="${PYTHON:-python3}"

# verl 0.9.1 takes a list of .parquet files (not a folder): ['/abs/a.parquet','/abs/b.parquet'].
hydra_list() {
    local out="" f
    for f in "$@"; do
        if [[ "$f" == *"'"* || "$f" == *\\* ]]; then
            echo "verl_grpo.sh: cannot pass a path with a quote or backslash to Hydra: $f" >&2
            return 1
        fi
        out+="${out:+,}'$f'"
    done
    printf '[%s]' "$out"
}
shopt -s nullglob
train_shards=("$DATA"/verl/train-*.parquet)
val_shards=("$DATA"/verl/val-*.parquet)
shopt -u nullglob
if [[ ${#train_shards[@]} -eq 0 || ${#val_shards[@]} -eq 0 ]]; then
    echo "verl_grpo.sh: $DATA/verl needs train-*.parquet and val-*.parquet" >&2
    exit 1
fi
TRAIN_FILES="$(hydra_list "${train_shards[@]}")"
VAL_FILES="$(hydra_list "${val_shards[@]}")"
for value in "$MODEL" "$SSRL_REWARD_VERL"; do
    if [[ "$value" == *"'"* || "$value" == *\\* ]]; then
        echo "verl_grpo.sh: cannot pass a value with a quote or backslash to Hydra: $value" >&2
        exit 1
    fi
done

# Each line of the overrides file becomes one argument; only the four documented placeholders are filled in.
overrides=()
while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
    line="${line//'${MODEL}'/"$MODEL"}"
    line="${line//'${TRAIN_FILES}'/"$TRAIN_FILES"}"
    line="${line//'${VAL_FILES}'/"$VAL_FILES"}"
    line="${line//'${SSRL_REWARD_VERL}'/"$SSRL_REWARD_VERL"}"
    if [[ "$line" == *'${'* ]]; then
        echo "verl_grpo.sh: unknown placeholder in $OVERRIDES: $line" >&2
        exit 1
    fi
    overrides+=("$line")
done <"$OVERRIDES"

cmd=("$PYTHON" -m verl.trainer.main_ppo "${overrides[@]}" "$@")

if [[ "${SSRL_DRY_RUN:-0}" != 0 ]]; then
    printf '%s\n' "${cmd[@]}"
    exit 0
fi
exec "${cmd[@]}"
