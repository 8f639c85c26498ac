#!/usr/bin/env bash
# Spatial-SSRL GRPO with EasyR1 (hiyouga/EasyR1), the paper's settings, from any working directory.
#
#   bash easyr1_grpo.sh [DATA_DIR] [key=value ...]
#
#   DATA_DIR   output of `ssrl build` (default: $DATA, else ./demo_data); reads DATA_DIR/easyr1/{train,val}-*.parquet
#   key=value  any EasyR1 override, applied last, e.g. trainer.n_gpus_per_node=4 trainer.logger=[console]
#   MODEL      env, default: the config's worker.actor.model.model_path (Qwen2.5-VL-7B in easyr1_grpo.yaml,
#              Qwen3-VL-4B in easyr1_grpo_qwen3vl.yaml)
#   CONFIG     env, default easyr1_grpo.yaml beside this script (easyr1_grpo_inpainting.yaml for large pictures)
#   PYTHON     env, default python3 (the interpreter that has EasyR1 installed)
#   SSRL_DRY_RUN=1  print the command, one argument per line, instead of running it
#
# Older EasyR1 (the version the paper used) also needs worker.reward.reward_type=batch: pass it as an extra
# key=value. Current EasyR1 has no such key and reads REWARD_TYPE from the reward file.
set -euo pipefail

if ! command -v ssrl >/dev/null 2>&1; then
    echo "easyr1_grpo.sh: 'ssrl' not found: pip install spatial-ssrl (or pip install -e .) in this environment" >&2
    exit 1
fi
# Absolute paths of the reward file, the format prompt and this folder (EasyR1 silently drops a format prompt
# whose relative path does not resolve, so nothing here is relative).
eval "$(ssrl paths --shell)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIGS="${SSRL_EXAMPLE_CONFIGS:-$HERE}"

DATA="${DATA:-demo_data}"
if [[ $# -gt 0 && "$1" != *=* ]]; then
    DATA="$1"
    shift
fi
if [[ ! -d "$DATA/easyr1" ]]; then
    echo "easyr1_grpo.sh: no $DATA/easyr1 folder: build the data first, e.g. ssrl build --out $DATA" >&2
    exit 1
fi
DATA="$(cd "$DATA" && pwd)"
shopt -s nullglob
train_shards=("$DATA"/easyr1/train-*.parquet)
val_shards=("$DATA"/easyr1/val-*.parquet)
shopt -u nullglob
if [[ ${#train_shards[@]} -eq 0 || ${#val_shards[@]} -eq 0 ]]; then
    echo "easyr1_grpo.sh: $DATA/easyr1 needs train-*.parquet and val-*.parquet" >&2
    exit 1
fi

MODEL="${MODEL:-}"
CONFIG="${CONFIG:-$CONFIGS/easyr1_grpo.yaml}"
PYTHON="${PYTHON:-python3}"

# A folder + split: EasyR1 loads it with datasets.load_dataset("parquet", data_dir=..., split=...), which names
# train-*.parquet "train" and val-*.parquet "validation".
cmd=(
    "$PYTHON" -m verl.trainer.main
    "config=$CONFIG"
    "data.train_files=$DATA/easyr1@train"
    "data.val_files=$DATA/easyr1@validation"
    "data.format_prompt=$SSRL_FORMAT_PROMPT"
    "worker.reward.reward_function=$SSRL_REWARD_EASYR1:compute_score"
)
# The model: the config's unless MODEL is set (so CONFIG=...qwen3vl.yaml alone trains the model it names).
if [[ -n "$MODEL" ]]; then
    cmd+=("worker.actor.model.model_path=$MODEL")
fi
cmd+=("$@")

if [[ "${SSRL_DRY_RUN:-0}" != 0 ]]; then
    printf '%s\n' "${cmd[@]}"
    exit 0
fi
# EasyR1's own default config fails to load under omegaconf 2.4 (its `logger` field), which EasyR1's requirements
# do not exclude: stop here with the fix rather than in a traceback from inside the trainer.
omegaconf_version="$("$PYTHON" -c 'import omegaconf; print(omegaconf.__version__)' 2>/dev/null || true)"
if [[ "$omegaconf_version" == 2.4* || "$omegaconf_version" == 2.[5-9]* || "$omegaconf_version" == [3-9].* ]]; then
    echo "easyr1_grpo.sh: EasyR1 does not load its config with omegaconf $omegaconf_version: pip install 'omegaconf<2.4' in this environment" >&2
    exit 1
fi
exec "${cmd[@]}"
