#!/usr/bin/env bash
# GPU smoke test: a few GRPO steps with verl 0.9.1 on the demo data, printing the reward per task at each step.
# Not run in CI (it needs a GPU, vLLM and a Qwen2.5-VL checkpoint); a check that the whole chain works on your
# machine before a real run: data -> verl's dataset -> vLLM rollouts with 5-image prompts -> our reward -> update.
#
#   MODEL=/models/Qwen2.5-VL-3B-Instruct bash gpu_smoke.sh [OUT_DIR] [key=value ...]
#
#   MODEL      a LOCAL Qwen2.5-VL checkpoint folder (required; 3B fits one 80 GB GPU with these settings)
#   OUT_DIR    default ./ssrl_gpu_smoke: OUT_DIR/data (demo build, reused if present), OUT_DIR/rollouts/<step>.jsonl,
#              OUT_DIR/val (validation generations), OUT_DIR/checkpoints
#   STEPS      training steps, default 4        NGPUS   GPUs on this node, default 1
#   PYTHON     the interpreter that has verl (and vLLM) and spatial-ssrl installed, default python3
#   key=value  more Hydra overrides, applied last (e.g. actor_rollout_ref.rollout.gpu_memory_utilization=0.3)
#   SSRL_DRY_RUN=1  build the data, then print the verl command instead of running it
#
# What you see: verl's console metrics after each step (critic/score/mean, val-core/spatial_ssrl/<task>/acc/mean@1
# at every validation), and from reward_per_task.py a table per step: responses, mean reward, accuracy and format
# per task, read from the rollouts verl dumps (trainer.rollout_data_dir). An untrained 3B model scores well above
# 0 on format and around chance on accuracy (crop/position 0.25); the point is that every task shows up.
#
# Prerequisites (a GPU environment, not the CPU test one): pip install 'verl[vllm,fsdp]==0.9.1' qwen-vl-utils
# spatial-ssrl. verl's GPU extras bring vLLM, its CUDA torch and TransferQueue, which verl's trainer imports.
set -euo pipefail

if ! command -v ssrl >/dev/null 2>&1; then
    echo "gpu_smoke.sh: 'ssrl' not found: pip install spatial-ssrl (or pip install -e .) in this environment" >&2
    exit 1
fi
eval "$(ssrl paths --shell)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIGS="${SSRL_EXAMPLE_CONFIGS:-$HERE}"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-4}"
NGPUS="${NGPUS:-1}"

OUT="${1:-ssrl_gpu_smoke}"
if [[ $# -gt 0 && "$1" != *=* ]]; then shift; else OUT="ssrl_gpu_smoke"; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [[ -z "${MODEL:-}" || ! -f "${MODEL}/config.json" ]]; then
    echo "gpu_smoke.sh: set MODEL to a local Qwen2.5-VL checkpoint folder (with config.json), got '${MODEL:-}'" >&2
    exit 1
fi
MODEL="$(cd "$MODEL" && pwd)"
if [[ "${SSRL_DRY_RUN:-0}" == 0 ]]; then
    command -v nvidia-smi >/dev/null 2>&1 || { echo "gpu_smoke.sh: no nvidia-smi: this recipe needs a GPU" >&2; exit 1; }
    "$PYTHON" -c "import verl, vllm, transfer_queue, qwen_vl_utils" 2>/dev/null || {
        echo "gpu_smoke.sh: $PYTHON cannot import verl, vllm, transfer_queue and qwen_vl_utils:" \
             "pip install 'verl[vllm,fsdp]==0.9.1' qwen-vl-utils" >&2
        exit 1
    }
fi

# 1. demo data: 96 samples (80 train, 16 validation), every task equally often, the demo corpus at 640 x 480
if [[ ! -f "$OUT/data/manifest.json" ]]; then
    ssrl build --out "$OUT/data" --num-samples 96 val_fraction=0.1667 \
        mix.shuffle=1 mix.flip=1 mix.crop=1 mix.depth=1 mix.position=1 demo.num_rgb=24 demo.num_rgbd=24
fi

# 2. verl: the example recipe (verl_grpo.sh and its overrides), shrunk to a few small steps on NGPUS GPUs
BATCH=$((8 * NGPUS))
smoke=(
    data.train_batch_size="$BATCH"
    data.max_response_length=512
    data.dataloader_num_workers=2
    actor_rollout_ref.actor.ppo_mini_batch_size="$BATCH"
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2
    actor_rollout_ref.actor.fsdp_config.param_offload=True
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=True
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4
    actor_rollout_ref.rollout.n=4
    actor_rollout_ref.rollout.tensor_model_parallel_size=1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.4
    trainer.n_gpus_per_node="$NGPUS"
    trainer.total_training_steps="$STEPS"
    trainer.test_freq=2
    trainer.save_freq=-1
    trainer.val_before_train=True
    "trainer.logger=['console']"
    trainer.project_name=spatial_ssrl_smoke
    trainer.experiment_name=gpu_smoke
    trainer.default_local_dir="$OUT/checkpoints"
    trainer.rollout_data_dir="$OUT/rollouts"
    trainer.validation_data_dir="$OUT/val"
)
if [[ "${SSRL_DRY_RUN:-0}" != 0 ]]; then
    MODEL="$MODEL" PYTHON="$PYTHON" SSRL_DRY_RUN=1 bash "$CONFIGS/verl_grpo.sh" "$OUT/data" "${smoke[@]}" "$@"
    exit 0
fi

# 3. train, with the per-task table printed as each step's rollouts land
rm -rf "$OUT/rollouts"
MODEL="$MODEL" PYTHON="$PYTHON" bash "$CONFIGS/verl_grpo.sh" "$OUT/data" "${smoke[@]}" "$@" &
trainer=$!
"$PYTHON" "$CONFIGS/reward_per_task.py" "$OUT/rollouts" --follow --pid "$trainer" --interval 5 &
watcher=$!
trap 'kill "$trainer" "$watcher" 2>/dev/null || true' INT TERM
status=0
wait "$trainer" || status=$?
wait "$watcher" || true
echo "gpu_smoke.sh: verl exited with $status; rollouts in $OUT/rollouts, validation generations in $OUT/val"
exit "$status"
