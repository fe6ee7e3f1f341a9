"""The experiment plans of ``entropy-mech reproduce``: ``quick`` (<= 15 min on 2 CPU cores from an empty
model cache) and ``full`` (<= 2 h). Each is a list of :class:`reproduce.experiments.Spec`.

Tags say which figure reads a run: ``group`` in {``law`` (sizes, paper Figs. 1, 3, 5, 7), ``methods``
(Fig. 11, Table 2), ``sweep`` (Figs. 9, 10, 12), ``theory`` (first-order error vs step size), ``cov``
(Fig. 8, Table 1)}; ``sweep`` names the swept knob and ``value`` its setting.

``quick`` runs its LLM experiments on the reasoning-length ``stepwise`` task (llm_rl/tasks/stepwise.py:
5 operands in 0..20, one written equation per step in a random surface form that leans "tidy" in correct
solutions (``style_signal`` 0.6), a ``\\boxed{}`` answer, ~55 tokens per response): one warm start of the
default model (``m96``; 1500 steps; 30% correct, 20% one-slip and 50% misconceived solutions; validation
greedy accuracy 24%, T=1 accuracy 34%, T=1 token entropy 0.41 nats; 418 s of one core), then GRPO and
KL-Cov with 3 seeds each for 60 steps: lr 1e-4, 8 prompts x 8 responses, 4 optimizer mini-batches per
rollout step, dynamic sampling, validation on 64 prompts every 5 steps, diagnostics (with the own / cross /
history decomposition) every 10. A single GRPO run there took greedy accuracy 20% -> 64% and training
entropy 0.42 -> 0.375 nats (-10.5%). KL-Cov uses k = 0.05, beta = 2 (with ~50-token responses the
arithmetic settings k = 0.2, beta = 7 penalise so many tokens that accuracy stalled). The plain format
(``variety=false``: 0.055 nats, GRPO -42%) and the uniform surface (``style_signal=0``: 0.50 nats, GRPO -5%)
are documented in the task module. No size runs, so the size-scaling claim (Fig. 7), Clip-Cov /
clip-higher and the entropy-control sweeps read "not measured in quick". The simulator runs share the
cores with the warm start. Its wall time from an empty model cache is in the report and in README.md.

``full`` keeps the ``arithmetic`` task (operands 0..12, ``"19#14"``-style responses), where the
collapse benchmark (``benchmarks/entropy_collapse.py``) shows the phenomenon: the default warm start
(3000 steps; 20% correct, 25% one-slip, 55% misconceived; greedy accuracy 40%), RL lr 1e-4, 16 prompts x 8
responses, 8 optimizer mini-batches per rollout step (the paper's 8 updates per step), dynamic sampling,
diagnostics every 10 steps. There (200 steps, 3 seeds) GRPO took greedy accuracy 40% -> 92%, T=0.6
accuracy 47% -> 91% and training entropy 0.338 -> 0.097 (-71%, two thirds of the fall in the first
third). That toy has ~1 "forking" token in 5, far more than an LLM's chain of thought, so the paper's token
fractions (2e-4, 2e-3) select ~0 tokens per mini-batch: KL-Cov uses k = 0.2 and beta = 7 and Clip-Cov
r = 0.2 (both need ``allow_large_ratio``); with them KL-Cov ended at 3.4x GRPO's entropy. ``full`` runs
300 steps, 3 seeds of GRPO / clip-higher / Clip-Cov / KL-Cov at m96, GRPO at five sizes (3000-step warm
starts each) for the law and its size scaling, and the sweeps; moving its ~40 LLM runs to ``stepwise``
(~4x the tokens per step) would not fit its 2 hours.
Cost estimates (``est_s``) are one-core seconds measured on the development machine.
``gpu``: the scaled validation on one CUDA GPU (:func:`gpu_plan`; ``--tiny``: the same steps at toy size on
CPU), with its benchmark steps (:func:`bench_steps`).
"""

from __future__ import annotations

import math
import random

from theory.names import MAX_UNGUARDED_RATIO

from .experiments import MODEL_PLACEHOLDER, Spec
from .gpu_steps import BenchStep

TASK = "arithmetic"  # the full and gpu profiles' task
QUICK_TASK = "stepwise"  # the quick profile's task: reasoning-length responses (llm_rl/tasks/stepwise.py)
SIZES = {  # name -> llm_rl.model.default_model_config overrides (the default model is "m96")
    "m32": {"hidden_size": 32, "num_layers": 2, "intermediate_size": 64},
    "m64": {"hidden_size": 64, "num_layers": 2, "intermediate_size": 128},
    "m96": {},
    "m128": {"hidden_size": 128, "num_layers": 4, "intermediate_size": 384},
    "m192": {"hidden_size": 192, "num_layers": 4, "intermediate_size": 512},
}
METHOD_PARAMS = {  # token fractions sized for this toy (see the module docstring)
    "grpo": [],
    "clip_higher": ["--objective-param", "eps_high=0.28"],
    "clip_cov": ["--objective-param", "clip_ratio=0.2", "--objective-param", "allow_large_ratio=true"],
    "kl_cov": ["--objective-param", "kl_ratio=0.2", "--objective-param", "kl_coef=7.0",
               "--objective-param", "allow_large_ratio=true"],
}
# the collapse benchmark's settings, stated explicitly (--minibatches: the old spelling of --num-minibatches)
RL_ARGS = ["--lr", "1e-4", "--minibatches", "8"]
DIAGNOSE_EVERY = 10  # per-state entropy-dynamics diagnostics + decomposition (~40-50% of a diagnosed step)
# quick: the stepwise task's settings (see the module docstring for what they gave)
QUICK_PRETRAIN_STEPS = 1500  # shorter warm starts (600 steps) leave GRPO nothing to sharpen in 60 steps
QUICK_PRETRAIN_EST = 420.0  # one-core seconds, including its validation (measured: 418 s)
QUICK_STEPS, QUICK_VAL_EVERY, QUICK_N_VAL = 60, 5, 64
QUICK_RL_ARGS = ["--lr", "1e-4", "--minibatches", "4", "--prompts-per-step", "8", "--group-size", "8"]
QUICK_STEP_EST = 1.3  # one-core seconds per rollout step, validation and diagnostics included
QUICK_METHOD_PARAMS = {"grpo": [],  # ~45-token responses: KL-Cov's k = 0.2, beta = 7 froze accuracy there
                       "kl_cov": ["--objective-param", "kl_ratio=0.05", "--objective-param", "kl_coef=2.0",
                                  "--objective-param", "allow_large_ratio=true"]}
QUICK = {"task": QUICK_TASK, "pretrain_steps": QUICK_PRETRAIN_STEPS, "pretrain_est": QUICK_PRETRAIN_EST,
         "steps": QUICK_STEPS, "val_every": QUICK_VAL_EVERY, "n_val": QUICK_N_VAL, "rl_args": QUICK_RL_ARGS,
         "step_est": QUICK_STEP_EST, "method_params": QUICK_METHOD_PARAMS,
         "seeds": {"grpo": (0, 1, 2), "kl_cov": (0, 1, 2)}}
FULL = {"task": TASK, "pretrain_steps": 3000, "steps": 300, "val_every": 10, "n_val": 128, "rl_args": RL_ARGS,
        "step_est": 0.9, "method_params": METHOD_PARAMS,
        "seeds": {o: (0, 1, 2) for o in ("grpo", "clip_higher", "clip_cov", "kl_cov")}}
PROFILES = ("quick", "full", "gpu")


def bench_steps(profile: str, tiny: bool = False) -> list:
    """The benchmark steps run after the plan's runs (:mod:`reproduce.gpu_steps`; only ``gpu`` has any)."""
    return gpu_bench_steps(tiny) if profile == "gpu" else []


def _pretrain(size: str, steps: int, est: float, task: str = TASK) -> Spec:
    args = ["--task", task, "--steps", str(steps)]
    for k, v in SIZES[size].items():
        args += ["--model-size", f"{k}={v}"]
    return Spec(f"pretrain-{size}", "pretrain", tuple(args), tags={"size_name": size}, est_s=est)


def _train(name: str, size: str, objective: str, seed: int, steps: int, val_every: int, est: float,
           extra: list[str] | tuple = (), p: dict | None = None, **tags) -> Spec:
    p = p or FULL
    args = ["--task", p["task"], "--model", MODEL_PLACEHOLDER, "--objective", objective,
            "--steps", str(steps), "--seed", str(seed), "--val-every", str(val_every),
            "--n-val", str(p["n_val"]),
            "--checkpoint-every", str(steps), "--diagnose-every", str(DIAGNOSE_EVERY), *p["rl_args"],
            *p["method_params"].get(objective, []), *extra]
    return Spec(name, "train", tuple(args), needs=f"pretrain-{size}",
                tags={"size_name": size, "objective": objective, "seed": seed, **tags}, est_s=est)


def _sim(name: str, est: float, *args: str, **tags) -> Spec:
    return Spec(name, "simulate", tuple(args), tags=tags, est_s=est)


def _sim_lm(name, objective, steps, instances, est, *extra, **tags) -> Spec:
    return _sim(name, est, "--world", "tabular_lm", "--rule", "grpo", "--objective", objective, "--optimizer",
                "adam", "--lr", "0.05", "--group-size", "8", "--ppo-epochs", "4", "--steps", str(steps),
                "--instances", str(instances), "--init", "random", "--init-scale", "1.0", *extra, **tags)


def _sims(steps: int, instances: int, est: float, sweep_ratios=(0.02, 0.05),
          sweep_coefs=(0.1, 5.0)) -> list[Spec]:
    """Tabular-LM GRPO runs (24 tokens per prompt and step, so Clip-Cov's ratio must be large to select
    more than one token: 0.2 needs ``allow_large_ratio``) and exact-PG bandit runs for the step-size test."""
    specs = [_sim_lm("sim-lm-grpo", "ppo_clip", steps, instances, est, group="methods", sim_method="grpo"),
             _sim_lm("sim-lm-clip_higher", "clip_higher", steps, instances, est, group="methods"),
             _sim_lm("sim-lm-clip_cov", "clip_cov", steps, instances, est, "--objective-param",
                     "clip_ratio=0.2", "--objective-param", "allow_large_ratio=true", group="methods",
                     sweep="clip_cov", value=0.2),
             _sim_lm("sim-lm-kl_cov", "kl_cov", steps, instances, est, "--objective-param", "kl_ratio=0.05",
                     "--objective-param", "kl_coef=1.0", group="methods", sweep="kl_cov", value=1.0)]
    specs += [_sim_lm(f"sim-lm-clip_cov-{r}", "clip_cov", steps, instances, est, "--objective-param",
                      f"clip_ratio={r}", group="sweep", sweep="clip_cov", value=r) for r in sweep_ratios]
    specs += [_sim_lm(f"sim-lm-kl_cov-{c}", "kl_cov", steps, instances, est, "--objective-param",
                      "kl_ratio=0.05", "--objective-param", f"kl_coef={c}", group="sweep", sweep="kl_cov",
                      value=c)
              for c in sweep_coefs]
    specs += [_sim(f"sim-bandit-pg-lr{lr}", 3.0, "--world", "bandit", "--rule", "pg", "--n-actions", "10",
                   "--init", "random", "--init-scale", "1.5", "--lr", str(lr), "--steps", "2",
                   "--instances", "64", group="theory", value=lr) for lr in (0.01, 0.03, 0.1, 0.3)]
    return specs


def plan(profile: str, tiny: bool = False) -> list[Spec]:
    """The specs of ``profile`` (``quick``, ``full`` or ``gpu``; ``tiny`` only with ``gpu``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    if tiny and profile != "gpu":
        raise ValueError("tiny applies only to the gpu profile (--profile gpu --tiny)")
    if profile == "gpu":
        return gpu_plan(tiny)
    quick = profile == "quick"
    p = QUICK if quick else FULL
    steps, val_every = p["steps"], p["val_every"]
    sizes = ("m96",) if quick else tuple(SIZES)
    pre_est = {"m32": 70, "m64": 90, "m96": 150, "m128": 400, "m192": 700}  # 3000 steps, one core
    specs = [_pretrain(s, p["pretrain_steps"], p.get("pretrain_est", pre_est[s]), p["task"]) for s in sizes]
    t_est = p["step_est"] * steps + 15  # validation every val_every steps, diagnostics every DIAGNOSE_EVERY
    # law across sizes (grpo, seed 0); the m96 run doubles as the methods' grpo seed 0
    specs += [_train(f"llm-grpo-{s}-s0", s, "grpo", 0, steps, val_every,
                     t_est * (2.0 if s in ("m128", "m192") else 1.0), p=p,
                     group="law" if len(sizes) > 1 else "methods") for s in sizes]
    for obj in METHOD_PARAMS:
        for seed in p["seeds"].get(obj, ()):
            if obj == "grpo" and seed == 0:
                continue
            specs.append(_train(f"llm-{obj}-m96-s{seed}", "m96", obj, seed, steps, val_every, t_est, p=p,
                                group="methods"))
    ent_coefs, kl_coefs = ((), ()) if quick else ((1e-4, 1e-3, 5e-3, 1e-2), (1e-3, 1e-2, 5e-2, 0.1))
    specs += [_train(f"llm-ent{c}-m96-s0", "m96", "grpo", 0, steps, val_every, t_est,
                     ["--entropy-coef", str(c)], group="sweep", sweep="entropy_coef", value=c)
              for c in ent_coefs]
    specs += [_train(f"llm-refkl{c}-m96-s0", "m96", "grpo", 0, steps, val_every, t_est,
                     ["--ref-kl-coef", str(c)], group="sweep", sweep="ref_kl_coef", value=c)
              for c in kl_coefs]
    if not quick:
        specs += [_train(f"llm-clip_cov{r}-m96-s0", "m96", "clip_cov", 0, steps, val_every, t_est,
                         ["--objective-param", f"clip_ratio={r}"], group="sweep", sweep="clip_cov",
                         value=r)
                  for r in (0.05, 0.1, 0.3)]
        specs += [_train(f"llm-kl_cov{c}-m96-s0", "m96", "kl_cov", 0, steps, val_every, t_est,
                         ["--objective-param", f"kl_coef={c}"], group="sweep", sweep="kl_cov",
                         value=c)
                  for c in (0.5, 1.0, 10.0)]
    specs += (_sims(100, 48, 10.0, (0.05,), (5.0,)) if quick else _sims(400, 256, 60.0))
    return specs


# ---------------------------------------------------------------------------------------------------------
# gpu: the scaled validation on one GPU (issue 16); --tiny: the same steps at toy size on CPU
# ---------------------------------------------------------------------------------------------------------
GPU_MODEL = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "num_kv_heads": 4,
             "intermediate_size": 3072}
"""103,843,584 non-embedding parameters (figures.curves.non_embedding_params; the char vocabulary adds
~0.05 M embedding parameters); GPT-2-small width and depth, Qwen2 architecture with 3:1 grouped-query
attention"""
TINY_MODEL = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}
GPU = {"pretrain": {"steps": 1200, "batch": 128, "lr": 6e-4, "warmup": 100},
       "train": {"steps": 60, "val_every": 10, "n_val": 128, "prompts": 32, "group": 8, "minibatches": 8,
                 "lr": 2e-5, "diagnose_every": 10},
       "diag": ("--rows", "8192", "--vocab", "151936", "--device", "cuda"),
       "throughput": ("--steps", "3", "--warmup", "1", "--repeats", "1", "--device", "cuda")}
GPU_TINY = {"pretrain": {"steps": 400, "batch": 32, "lr": 3e-3, "warmup": 20},
            "train": {"steps": 4, "val_every": 2, "n_val": 16, "prompts": 8, "group": 8, "minibatches": 2,
                      "lr": 1e-4, "diagnose_every": 2},
            "diag": ("--rows", "64", "--vocab", "4096", "--device", "cpu", "--eager-only",
                     "--naive-rows", "16"),
            "throughput": ("--steps", "1", "--warmup", "1", "--repeats", "1", "--device", "cpu")}
PAPER_FRACTIONS = {"clip_cov": ("clip_ratio", 2e-4), "kl_cov": ("kl_ratio", 2e-3)}
"""the paper's token fractions (Clip-Cov r, KL-Cov k for Qwen2.5-7B), used when a mini-batch is big enough"""
MIN_SELECTED = 8
"""below the paper's fraction's reach, the smallest fraction that selects this many tokens per mini-batch"""


def minibatch_tokens(prompts: int, group: int, minibatches: int, n: int = 512) -> float:
    """Estimated response tokens in one mini-batch: ``prompts * group / minibatches`` rows times the mean
    length (characters = tokens, plus <eos>) of the correct solutions of ``n`` training problems of the
    task (the warm start's wrong and misconceived solutions have the same format)."""
    from llm_rl.tasks import make_splits, make_task

    if min(prompts, group, minibatches, n) < 1:
        raise ValueError("prompts, group, minibatches and n must be >= 1")
    task = make_task(TASK)
    train, _ = make_splits(task, n, 1, 0)
    rng = random.Random(0)
    mean_len = sum(len(task.solution(p, rng)) + 1 for p in train) / len(train)
    return prompts * group / minibatches * mean_len


def token_fraction(paper: float, n_tokens: float, min_selected: int = MIN_SELECTED) -> float:
    """``paper`` when its quota ``floor(paper * N)`` reaches ``min_selected`` tokens of a mini-batch of
    ``N = n_tokens``, else the smallest fraction r of 3 significant digits with ``floor(r * N) >=
    min_selected`` (r = m / N rounded up)."""
    if not 0 < paper < 1 or not n_tokens >= min_selected or min_selected < 1:
        raise ValueError(f"need 0 < paper < 1 and n_tokens >= min_selected >= 1, got {paper}, {n_tokens}, "
                         f"{min_selected}")
    if int(paper * n_tokens) >= min_selected:
        return paper
    unit = 10.0 ** (math.floor(math.log10(min_selected / n_tokens)) - 2)  # 3 significant digits
    k = math.ceil(min_selected / n_tokens / unit)
    while int(round(k * unit, 12) * n_tokens) < min_selected:  # float rounding of k * unit
        k += 1
    return round(k * unit, 12)


def gpu_plan(tiny: bool = False) -> list[Spec]:
    """The ``gpu`` profile: one warm start of a ~104 M-parameter Qwen2 (:data:`GPU_MODEL`) on the arithmetic
    task, then GRPO, KL-Cov (beta = 1, the paper's) and Clip-Cov (the paper's omega bounds) from it with the
    entropy-dynamics diagnostics, seed 0. On CUDA the warm start and the RL runs train under bf16 autocast
    with float32 master weights (``llm_rl.pretrain.training_autocast``, the trainer's ``device="auto"``).

    Token fractions: a mini-batch holds ~N = 32 x 8 / 8 = 32 rows x ~5.3 tokens (scratchpad + <eos>) ~ 171
    response tokens, so the paper's r = 2e-4 / k = 2e-3 select 0 / 0 tokens there (the quota is floor(r N),
    at least 1); both use the smallest fraction (3 significant digits) that selects >= 8 tokens, 0.0469
    (:func:`token_fraction`; stated in each spec's tags and in ``gpu_summary.json``; ``tiny`` has the same
    8 x 8 / 2 = 32 rows per mini-batch, so the same fraction).

    Time budget, from an empty cache on one H100/H200: ~6.5 min (an estimate; no GPU was available to
    measure it). How: the model is small for such a GPU, so each step costs its kernel launches (~10 us
    each, ~25 per decoder layer and pass, eager PyTorch) plus the CPU work around them, more than its FLOPs
    (a warm-start step is 6 x 104 M x ~2.8 k tokens = 1.7 TFLOP, ~5 ms at 35% of bf16 peak); the CPU-side
    parts were timed with ``--tiny`` on this repository's 2-core CPU machine.
    - warm start: 1200 steps x ~35 ms (forward + backward + AdamW over 12 layers, tokenising 128 examples)
      + evaluation + CUDA start-up ~ 70 s;
    - RL: per step a generation of 256 rows x ~6 tokens (<= 28; ~8 ms per decoded token with the KV cache),
      re-scoring, 8 mini-batch updates (~40 ms each), validation and diagnostics every 10 steps: ~0.6 s;
      60 steps + start-up ~ 50 s per run; the three runs share the GPU (``--jobs 3``, one CPU core each)
      ~ 80 s;
    - diagnostics_cost: two 2.5 GB bf16 tensors, eager and torch.compile variants (~60 s compile warm-up)
      ~ 100 s;
    - trainer throughput: ours twice and TRL once, 1 + 3 rollout steps each, imports and model loads ~ 80 s;
    - theorem checks, figures and the report on the CPU: ~45 s (measured with ``--tiny``).
    Total ~ 375 s, under the 8-minute budget with ~20% margin. ``tiny``: the same specs and steps at
    :data:`TINY_MODEL` size (400 warm-start and 4 RL steps, 64 x 4096 logits, 1 + 1 throughput steps),
    ~2.5 min on 2 CPU cores (tests/test_reproduce_gpu_profile.py, ``slow``).
    """
    c, size = (GPU_TINY, "tiny") if tiny else (GPU, "gpu104m")
    pre, tr = c["pretrain"], c["train"]
    args = ["--task", TASK, "--steps", str(pre["steps"]), "--batch-size", str(pre["batch"]), "--lr",
            str(pre["lr"]), "--warmup-steps", str(pre["warmup"])]
    for k, v in (TINY_MODEL if tiny else GPU_MODEL).items():
        args += ["--model-size", f"{k}={v}"]
    from figures.curves import non_embedding_params

    m = TINY_MODEL if tiny else GPU_MODEL
    n_params = non_embedding_params({"hidden_size": m["hidden_size"], "num_hidden_layers": m["num_layers"],
                                     "num_attention_heads": m["num_heads"],
                                     "num_key_value_heads": m["num_kv_heads"],
                                     "intermediate_size": m["intermediate_size"]})
    pre_name = f"pretrain-{size}"
    specs = [Spec(pre_name, "pretrain", tuple(args), est_s=70.0 if not tiny else 20.0,
                  tags={"profile": "gpu", "size_name": size, "non_embedding_params": n_params,
                        "precision": "bf16 autocast, fp32 master weights on CUDA"})]
    n_tok = round(minibatch_tokens(tr["prompts"], tr["group"], tr["minibatches"]), 1)
    for obj in ("grpo", "kl_cov", "clip_cov"):
        extra, tags = [], {}
        if obj in PAPER_FRACTIONS:
            key, paper = PAPER_FRACTIONS[obj]
            r = token_fraction(paper, n_tok)
            extra += ["--objective-param", f"{key}={r!r}"]
            if r > MAX_UNGUARDED_RATIO:
                extra += ["--objective-param", "allow_large_ratio=true"]
            tags = {"token_fraction": r, "paper_fraction": paper, "minibatch_tokens_est": n_tok,
                    "selected_tokens_est": int(r * n_tok), "fraction_rule": "paper" if r == paper
                    else f"smallest selecting >= {MIN_SELECTED} tokens"}
        if obj == "kl_cov":
            extra += ["--objective-param", "kl_coef=1.0"]
        targs = ["--task", TASK, "--model", MODEL_PLACEHOLDER, "--objective", obj,
                 "--steps", str(tr["steps"]), "--seed", "0", "--val-every", str(tr["val_every"]),
                 "--n-val", str(tr["n_val"]),
                 "--checkpoint-every", str(tr["steps"]), "--diagnose-every", str(tr["diagnose_every"]),
                 "--lr", str(tr["lr"]), "--prompts-per-step", str(tr["prompts"]), "--group-size",
                 str(tr["group"]), "--num-minibatches", str(tr["minibatches"]), *extra]
        specs.append(Spec(f"llm-{obj}-{size}-s0", "train", tuple(targs), needs=pre_name,
                          tags={"profile": "gpu", "group": "methods", "size_name": size, "objective": obj,
                                "seed": 0, **tags}, est_s=60.0 if not tiny else 15.0))
    return specs


def gpu_bench_steps(tiny: bool = False) -> list[BenchStep]:
    """The gpu profile's benchmark steps: the chunked diagnostics pass against one logsumexp on
    8192 x 151,936 bf16 logits (``tiny``: 64 x 4096 on CPU, eager only), and the trainer's end-to-end
    tokens/s against TRL's GRPOTrainer on the warm-started model of :func:`gpu_plan`, same device."""
    c, size = (GPU_TINY, "tiny") if tiny else (GPU, "gpu104m")
    return [BenchStep("diagnostics_cost", "benchmarks/diagnostics_cost.py", c["diag"], est_s=100.0),
            BenchStep("trainer_throughput", "benchmarks/trainer_throughput.py",
                      ("--model", MODEL_PLACEHOLDER, *c["throughput"]), needs=f"pretrain-{size}", est_s=80.0)]
