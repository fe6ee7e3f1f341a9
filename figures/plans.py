"""The two experiment plans of ``entropy-mech reproduce``: ``quick`` (<= 10 min on 2 CPU cores from an
empty model cache) and ``full`` (<= 2 h). Each is a list of :class:`figures.experiments.Spec`.

Tags say which figure reads a run: ``group`` in {``law`` (sizes, paper Figs. 1, 3, 5, 7), ``methods``
(Fig. 11, Table 2), ``sweep`` (Figs. 9, 10, 12), ``theory`` (first-order error vs step size), ``cov``
(Fig. 8, Table 1)}; ``sweep`` names the swept knob and ``value`` its setting. LLM runs use the
``arithmetic`` task and the llm_rl defaults (lr 1e-4, 16 prompts x 8 responses, 4 mini-batches per
rollout step, dynamic sampling) unless the spec says otherwise. Because our batches hold ~10^3 tokens
rather than the paper's ~10^6, Clip-Cov / KL-Cov use a token fraction of 5e-2 (paper: 2e-4, 2e-3) so that
they select tens of tokens per batch, and KL-Cov a coefficient of 5 (paper: 1), the setting at which the
llm_rl benchmark (benchmarks/entropy_collapse.py) saw KL-Cov hold entropy up on this model. Cost estimates (``est_s``) are one-core seconds
measured on the development machine.
"""

from __future__ import annotations

from .experiments import MODEL_PLACEHOLDER, Spec

TASK = "arithmetic"
SIZES = {  # name -> llm_rl.model.default_model_config overrides (the default model is "m96")
    "m32": {"hidden_size": 32, "num_layers": 2, "intermediate_size": 64},
    "m64": {"hidden_size": 64, "num_layers": 2, "intermediate_size": 128},
    "m96": {},
    "m128": {"hidden_size": 128, "num_layers": 4, "intermediate_size": 384},
    "m192": {"hidden_size": 192, "num_layers": 4, "intermediate_size": 512},
}
METHOD_PARAMS = {
    "grpo": [],
    "clip_higher": ["--param", "eps_high=0.28"],
    "clip_cov": ["--param", "clip_ratio=0.05"],
    "kl_cov": ["--param", "kl_ratio=0.05", "--param", "kl_coef=5.0"],
}
PROFILES = ("quick", "full")


def _pretrain(size: str, steps: int, est: float) -> Spec:
    args = ["--task", TASK, "--steps", str(steps)]
    for k, v in SIZES[size].items():
        args += ["--model-size", f"{k}={v}"]
    return Spec(f"pretrain-{size}", "pretrain", tuple(args), tags={"size_name": size}, est_s=est)


def _train(name: str, size: str, objective: str, seed: int, steps: int, val_every: int, est: float,
           extra: list[str] | tuple = (), **tags) -> Spec:
    args = ["--task", TASK, "--model", MODEL_PLACEHOLDER, "--objective", objective, "--steps", str(steps),
            "--seed", str(seed), "--val-every", str(val_every), "--n-val", "128",
            "--checkpoint-every", str(steps), *METHOD_PARAMS.get(objective, []), *extra]
    return Spec(name, "train", tuple(args), needs=f"pretrain-{size}",
                tags={"size_name": size, "objective": objective, "seed": seed, **tags}, est_s=est)


def _sim(name: str, est: float, *args: str, **tags) -> Spec:
    return Spec(name, "simulate", tuple(args), tags=tags, est_s=est)


def _sim_lm(name, objective, steps, instances, est, *extra, **tags) -> Spec:
    return _sim(name, est, "--world", "tabular_lm", "--rule", "grpo", "--objective", objective, "--optimizer",
                "adam", "--lr", "0.05", "--samples", "8", "--epochs", "4", "--steps", str(steps),
                "--instances", str(instances), "--init", "random", "--init-scale", "1.0", *extra, **tags)


def _sims(steps: int, instances: int, est: float, sweep_ratios=(0.02, 0.05), sweep_coefs=(0.1, 5.0)) -> list[Spec]:
    """Tabular-LM GRPO runs (24 tokens per prompt and step, so Clip-Cov's ratio must be large to select
    more than one token: 0.2 needs ``allow_large_ratio``) and exact-PG bandit runs for the step-size test."""
    specs = [_sim_lm("sim-lm-grpo", "ppo_clip", steps, instances, est, group="methods", sim_method="grpo"),
             _sim_lm("sim-lm-clip_higher", "clip_higher", steps, instances, est, group="methods"),
             _sim_lm("sim-lm-clip_cov", "clip_cov", steps, instances, est, "--objective-arg", "clip_ratio=0.2",
                     "--objective-arg", "allow_large_ratio=true", group="methods", sweep="clip_cov", value=0.2),
             _sim_lm("sim-lm-kl_cov", "kl_cov", steps, instances, est, "--objective-arg", "kl_ratio=0.05",
                     "--objective-arg", "kl_coef=1.0", group="methods", sweep="kl_cov", value=1.0)]
    specs += [_sim_lm(f"sim-lm-clip_cov-{r}", "clip_cov", steps, instances, est, "--objective-arg",
                      f"clip_ratio={r}", group="sweep", sweep="clip_cov", value=r) for r in sweep_ratios]
    specs += [_sim_lm(f"sim-lm-kl_cov-{c}", "kl_cov", steps, instances, est, "--objective-arg", "kl_ratio=0.05",
                      "--objective-arg", f"kl_coef={c}", group="sweep", sweep="kl_cov", value=c)
              for c in sweep_coefs]
    specs += [_sim(f"sim-bandit-pg-lr{lr}", 3.0, "--world", "bandit", "--rule", "pg", "--n-actions", "10",
                   "--init", "random", "--init-scale", "1.5", "--lr", str(lr), "--steps", "2",
                   "--instances", "64", group="theory", value=lr) for lr in (0.01, 0.03, 0.1, 0.3)]
    return specs


def plan(profile: str) -> list[Spec]:
    """The specs of ``profile`` (``quick`` or ``full``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    quick = profile == "quick"
    sizes = ("m32", "m64", "m96") if quick else tuple(SIZES)
    pre_steps, steps, val_every = (600, 60, 3) if quick else (3000, 300, 10)
    pre_est = {"m32": 25, "m64": 30, "m96": 45, "m128": 90, "m192": 160}
    scale = pre_steps / 600
    specs = [_pretrain(s, pre_steps, pre_est[s] * scale) for s in sizes]
    t_est = 0.45 * steps + 12
    seeds = {"grpo": (0, 1), "clip_higher": (0,), "clip_cov": (0, 1), "kl_cov": (0, 1)} if quick else None
    # law across sizes (grpo, seed 0); the m96 run doubles as the methods' grpo seed 0
    specs += [_train(f"llm-grpo-{s}-s0", s, "grpo", 0, steps, val_every, t_est * (1.5 if s in ("m128", "m192")
                                                                                  else 1.0), group="law")
              for s in sizes]
    for obj in METHOD_PARAMS:
        for seed in seeds[obj] if seeds else (0, 1, 2):
            if obj == "grpo" and seed == 0:
                continue
            specs.append(_train(f"llm-{obj}-m96-s{seed}", "m96", obj, seed, steps, val_every, t_est,
                                group="methods"))
    ent_coefs, kl_coefs = ((), ()) if quick else ((1e-4, 1e-3, 5e-3, 1e-2), (1e-3, 1e-2, 5e-2, 0.1))
    specs += [_train(f"llm-ent{c}-m96-s0", "m96", "grpo", 0, steps, val_every, t_est,
                     ["--entropy-coef", str(c)], group="sweep", sweep="entropy_coef", value=c) for c in ent_coefs]
    specs += [_train(f"llm-refkl{c}-m96-s0", "m96", "grpo", 0, steps, val_every, t_est,
                     ["--ref-kl-coef", str(c)], group="sweep", sweep="ref_kl_coef", value=c) for c in kl_coefs]
    if not quick:
        specs += [_train(f"llm-clip_cov{r}-m96-s0", "m96", "clip_cov", 0, steps, val_every, t_est,
                         ["--param", f"clip_ratio={r}"], group="sweep", sweep="clip_cov", value=r)
                  for r in (0.005, 0.01, 0.02)]
        specs += [_train(f"llm-kl_cov{c}-m96-s0", "m96", "kl_cov", 0, steps, val_every, t_est,
                         ["--param", f"kl_coef={c}"], group="sweep", sweep="kl_cov", value=c)
                  for c in (0.5, 1.0, 10.0)]
    specs += (_sims(100, 48, 10.0, (0.05,), (5.0,)) if quick else _sims(400, 256, 60.0))
    return specs
