"""``llm_rl``: a GRPO-family RL trainer for Hugging Face causal LMs (Cui et al. 2025, §4 on real models).

Modules, one idea each (imports only ``theory`` from this package; objectives come from
``theory.objectives``, aggregation from ``theory.aggregation``):

- ``tokenizer`` / ``model``: the character tokenizer and the tiny default Qwen2 model (no downloads);
- ``tasks``: synthetic verifiable tasks (``arithmetic``, ``countdown``) and verl-style prompt files
  (``file``); ``verifiers``: safe expression evaluation and ``\\boxed{}`` answers;
- ``pretrain``: the cached supervised warm start; ``evaluate``: validation metrics;
- ``rollout``: KV-cache sampling and re-scoring; ``advantages``: GRPO / Dr. GRPO;
- ``config``, ``trainer``, ``checkpoint``, ``metrics``, ``distributed``: the RL loop;
- ``cli_pretrain`` / ``cli_train`` / ``cli_eval``: the ``entropy-mech`` subcommands.
"""
