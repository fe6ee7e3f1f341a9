#!/usr/bin/env bash
# GRPO with this package's KL-Cov (or Clip-Cov) inside verl's own trainer, through the integrations.verl plugin.
# Not run in CI (it needs GPUs, vLLM and a model). Usage, from the repository root after
#   pip install -e .           # this package, so every Ray worker can import integrations.verl
#   pip install "verl[vllm]"   # verl with its GPU dependencies (the plugin was tested against verl 0.9.1)
#   verl's examples/data_preprocess/gsm8k.py (in a verl checkout) -> $DATA/{train,test}.parquet
# run:
#   bash examples/verl_grpo_klcov.sh                          # KL-Cov (paper 7B values)
#   LOSS=em_clip_cov bash examples/verl_grpo_klcov.sh         # Clip-Cov (paper values)
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct NGPUS=1 bash examples/verl_grpo_klcov.sh
# then fit the entropy-performance law to its log:
#   entropy-mech fit "$VERL_FILE_LOGGER_ROOT/entropy_mech/$EXP.jsonl"
set -euo pipefail

MODEL=${MODEL:-Qwen/Qwen2.5-7B-Instruct}
DATA=${DATA:-$HOME/data/gsm8k}
NGPUS=${NGPUS:-8}
LOSS=${LOSS:-em_kl_cov}            # em_kl_cov | em_clip_cov (registered by integrations.verl)
EXP=${EXP:-grpo_${LOSS}}

# verl imports the listed modules whenever `verl` is imported: in this driver and in every Ray worker
# (workers inherit this environment). The plugin registers em_kl_cov and em_clip_cov.
export VERL_USE_EXTERNAL_MODULES=integrations.verl
export ENTROPY_MECH_VERL_SEED=${SEED:-0}                  # Clip-Cov's random choice
export VERL_FILE_LOGGER_ROOT=${VERL_FILE_LOGGER_ROOT:-$PWD/verl_logs}   # the "file" logger's JSONL

# Hyperparameters are verl's own fields, read and unit-checked by the plugin (token ratios are FRACTIONS:
# 0.002 = 0.2 %, the paper's 7B KL-Cov value; the official repo's k_percent=0.2 meant the same).
if [ "$LOSS" = em_clip_cov ]; then
  LOSS_ARGS=(actor_rollout_ref.actor.policy_loss.clip_cov_ratio=0.0002
             actor_rollout_ref.actor.policy_loss.clip_cov_lb=1.0
             actor_rollout_ref.actor.policy_loss.clip_cov_ub=5.0
             actor_rollout_ref.actor.clip_ratio_low=1.0 actor_rollout_ref.actor.clip_ratio_high=1.0)
else
  LOSS_ARGS=(actor_rollout_ref.actor.policy_loss.kl_cov_ratio=0.002
             actor_rollout_ref.actor.policy_loss.ppo_kl_coef=1.0)
fi

# Several mini-batches per rollout batch (256 / 32 = 8 updates) make the update off-policy: KL-Cov's penalty
# |log π − log π_old| is zero on-policy (docs/ecosystem.md §1.4).
python3 -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo \
  algorithm.use_kl_in_reward=False \
  data.train_files="$DATA/train.parquet" \
  data.val_files="$DATA/test.parquet" \
  data.train_batch_size=256 \
  data.max_prompt_length=512 \
  data.max_response_length=2048 \
  actor_rollout_ref.model.path="$MODEL" \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=32 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
  actor_rollout_ref.actor.use_kl_loss=False \
  actor_rollout_ref.actor.entropy_coeff=0 \
  actor_rollout_ref.actor.loss_agg_mode=token-mean \
  actor_rollout_ref.actor.policy_loss.loss_mode="$LOSS" \
  "${LOSS_ARGS[@]}" \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
  trainer.logger='["console","file"]' \
  trainer.project_name=entropy_mech \
  trainer.experiment_name="$EXP" \
  trainer.n_gpus_per_node="$NGPUS" \
  trainer.nnodes=1 \
  trainer.test_freq=4 \
  trainer.save_freq=-1 \
  trainer.total_epochs=1 "$@"
