#!/usr/bin/env bash
# GPU smoke test: a few GRPO steps with verl 0.9.1 on the demo data, printing the reward per task at each step,
# with `ssrl eval` on the validation split before and after them and the per-task accuracy difference.
# Not run in CI (it needs a GPU, vLLM and a Qwen2.5-VL checkpoint); a check that the whole chain works on your
# machine before a real run: data -> verl's dataset -> vLLM rollouts with 5-image prompts -> our reward -> update
# -> a saved model that `ssrl eval` loads.
#
#   MODEL=/models/Qwen2.5-VL-3B-Instruct bash gpu_smoke.sh [OUT_DIR] [key=value ...]
#
#   MODEL      a LOCAL Qwen2.5-VL checkpoint folder (required; 3B fits one 80 GB GPU with these settings)
#   OUT_DIR    default ./ssrl_gpu_smoke: OUT_DIR/data (demo build, reused if present), OUT_DIR/rollouts/<step>.jsonl,
#              OUT_DIR/val (validation generations), OUT_DIR/checkpoints (the last step, with a HF model folder in
#              global_step_<STEPS>/actor/huggingface), OUT_DIR/eval ({before,after}.jsonl, compare.html); all but
#              data are replaced on every run
#   STEPS      training steps, default 4        NGPUS   GPUs on this node, default 1
#   PYTHON     the interpreter that has verl (and vLLM) and spatial-ssrl installed, default python3; it also runs
#              `ssrl eval` (as PYTHON -m data_builders.cli eval), which needs the model runtime
#   EVAL_LIMIT   samples of the validation split that `ssrl eval` scores before and after, default 16
#   EVAL_BACKEND vllm or transformers, default vllm when PYTHON imports it, else transformers
#   key=value  more Hydra overrides, applied last (e.g. actor_rollout_ref.rollout.gpu_memory_utilization=0.3)
#   SSRL_DRY_RUN=1  build the data, then print the verl command instead of running it
#
# What you see: `ssrl eval`'s per-task table for the untrained model, verl's console metrics after each step
# (critic/score/mean, val-core/spatial_ssrl/<task>/acc/mean@1 at every validation), and from reward_per_task.py a
# table per step: responses, mean reward, accuracy and format per task, read from the rollouts verl dumps
# (trainer.rollout_data_dir); then `ssrl eval` on the trained model and `ssrl eval --compare`: per task, accuracy
# before and after, the difference and an exact McNemar p-value. An untrained 3B model scores well above 0 on
# format and around chance on accuracy (crop/position 0.25); the point is that every task shows up. A few steps
# move accuracy little: the comparison checks the chain, not the method.
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
EVAL_LIMIT="${EVAL_LIMIT:-16}"

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
    "$PYTHON" -c "import data_builders.evaluate" 2>/dev/null || {
        echo "gpu_smoke.sh: $PYTHON cannot import spatial-ssrl (ssrl eval runs there): pip install spatial-ssrl" >&2
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
    trainer.total_epochs="$STEPS"
    trainer.save_freq="$STEPS"
    trainer.resume_mode=disable
    "actor_rollout_ref.actor.checkpoint.save_contents=['hf_model']"
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

# 3. the untrained model on the first EVAL_LIMIT validation samples (greedy, the training response length)
if [[ -z "${EVAL_BACKEND:-}" ]]; then
    if "$PYTHON" -c "import vllm" 2>/dev/null; then EVAL_BACKEND=vllm; else EVAL_BACKEND=transformers; fi
fi
ssrl_eval() {
    "$PYTHON" -m data_builders.cli eval "$@"
}
eval_split() {  # MODEL_DIR OUT_JSONL
    ssrl_eval --data "$OUT/data" --split val --limit "$EVAL_LIMIT" --model "$1" --backend "$EVAL_BACKEND" \
        --max-new-tokens 512 --batch-size 8 --out "$2"
}
rm -rf "$OUT/eval" "$OUT/rollouts" "$OUT/checkpoints"
mkdir -p "$OUT/eval"
echo "gpu_smoke.sh: ssrl eval ($EVAL_BACKEND) of $MODEL on $EVAL_LIMIT validation samples, before training"
eval_split "$MODEL" "$OUT/eval/before.jsonl"

# 4. train, with the per-task table printed as each step's rollouts land
MODEL="$MODEL" PYTHON="$PYTHON" bash "$CONFIGS/verl_grpo.sh" "$OUT/data" "${smoke[@]}" "$@" &
trainer=$!
"$PYTHON" "$CONFIGS/reward_per_task.py" "$OUT/rollouts" --follow --pid "$trainer" --interval 5 &
watcher=$!
trap 'kill "$trainer" "$watcher" 2>/dev/null || true' INT TERM
status=0
wait "$trainer" || status=$?
wait "$watcher" || true
echo "gpu_smoke.sh: verl exited with $status; rollouts in $OUT/rollouts, validation generations in $OUT/val"
if [[ "$status" != 0 ]]; then
    exit "$status"
fi

# 5. the trained model (verl's HF export of the last step) on the same samples, and the per-task difference
TRAINED="$OUT/checkpoints/global_step_$STEPS/actor/huggingface"
if [[ ! -f "$TRAINED/config.json" ]]; then
    echo "gpu_smoke.sh: verl saved no model folder $TRAINED (trainer.save_freq / checkpoint.save_contents)" >&2
    exit 1
fi
for f in preprocessor_config.json video_preprocessor_config.json processor_config.json chat_template.json \
         chat_template.jinja generation_config.json; do  # whatever verl's export left out, from the base model
    if [[ -f "$MODEL/$f" && ! -e "$TRAINED/$f" ]]; then cp "$MODEL/$f" "$TRAINED/$f"; fi
done
echo "gpu_smoke.sh: ssrl eval ($EVAL_BACKEND) of the trained model $TRAINED"
eval_split "$TRAINED" "$OUT/eval/after.jsonl"
echo "gpu_smoke.sh: accuracy per task, before (a) and after (b) $STEPS GRPO steps"
ssrl_eval --compare "$OUT/eval/before.jsonl" "$OUT/eval/after.jsonl" --data "$OUT/data" --html "$OUT/eval/compare.html"
