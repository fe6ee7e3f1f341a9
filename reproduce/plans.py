"""The two experiment plans of ``entropy-mech reproduce``: ``quick`` (<= 10 min on 2 CPU cores from an
empty model cache) and ``full`` (<= 2 h). Each is a list of :class:`reproduce.experiments.Spec`.

Tags say which figure reads a run: ``group`` in {``law`` (sizes, paper Figs. 1, 3, 5, 7), ``methods``
(Fig. 11, Table 2), ``sweep`` (Figs. 9, 10, 12), ``theory`` (first-order error vs step size), ``cov``
(Fig. 8, Table 1)}; ``sweep`` names the swept knob and ``value`` its setting.

LLM runs use the settings under which ``benchmarks/entropy_collapse.py`` shows the paper's phenomenon on
this machine: the ``arithmetic`` task (operands 0..12), the default warm start (``llm_rl.pretrain``
defaults: 3000 steps; 20% correct, 25% one-slip wrong and 55% systematically misconceived solutions, so
greedy accuracy starts at 40%), RL lr 1e-4, 16 prompts x 8 responses, 8 optimizer mini-batches per
rollout step (the paper's 8 updates per step), dynamic sampling, and per-state entropy-dynamics diagnostics
every 10 steps. There (200 steps, 3 seeds) GRPO took greedy accuracy 40% -> 92%, T=0.6 accuracy 47% -> 91%
and training entropy 0.338 -> 0.097 (-71%, two thirds of the fall in the first third). This toy has ~1
"forking" token in 5, far more than an LLM's chain of thought, so the paper's token fractions (2e-4, 2e-3)
select ~0 tokens per mini-batch: KL-Cov uses k = 0.2 and beta = 7 and Clip-Cov r = 0.2 (both need
``allow_large_ratio``); with them KL-Cov ended at 3.4x GRPO's entropy.

``quick``: one warm start (the default model, ``m96``), GRPO and KL-Cov with 2 seeds each at 150 steps
(validation every 5), the simulator runs sharing the cores with the warm start; no size runs, so the
size-scaling claim (Fig. 7), Clip-Cov / clip-higher and the entropy-control sweeps read "not measured in
quick". Its wall time from an empty model cache is in the report and in README.md.
``full``: the same settings with 300 steps, 3 seeds of GRPO / clip-higher / Clip-Cov / KL-Cov at m96,
GRPO at five sizes (3000-step warm starts each) for the law and its size scaling, and the sweeps.
Cost estimates (``est_s``) are one-core seconds measured on the development machine.
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
METHOD_PARAMS = {  # token fractions sized for this toy (see the module docstring)
    "grpo": [],
    "clip_higher": ["--objective-param", "eps_high=0.28"],
    "clip_cov": ["--objective-param", "clip_ratio=0.2", "--objective-param", "allow_large_ratio=true"],
    "kl_cov": ["--objective-param", "kl_ratio=0.2", "--objective-param", "kl_coef=7.0",
               "--objective-param", "allow_large_ratio=true"],
}
# the collapse benchmark's settings, stated explicitly (--minibatches: the old spelling of --num-minibatches)
RL_ARGS = ["--lr", "1e-4", "--minibatches", "8"]
DIAGNOSE_EVERY = 10  # per-state entropy-dynamics diagnostics (fig_dynamics; ~6% of a diagnosed step)
QUICK = {"steps": 150, "val_every": 5, "seeds": {"grpo": (0, 1), "kl_cov": (0, 1)}}
FULL = {"steps": 300, "val_every": 10,
        "seeds": {o: (0, 1, 2) for o in ("grpo", "clip_higher", "clip_cov", "kl_cov")}}
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
            "--checkpoint-every", str(steps), "--diagnose-every", str(DIAGNOSE_EVERY), *RL_ARGS,
            *METHOD_PARAMS.get(objective, []), *extra]
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


def plan(profile: str) -> list[Spec]:
    """The specs of ``profile`` (``quick`` or ``full``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    quick = profile == "quick"
    p = QUICK if quick else FULL
    steps, val_every = p["steps"], p["val_every"]
    sizes = ("m96",) if quick else tuple(SIZES)
    pre_est = {"m32": 70, "m64": 90, "m96": 150, "m128": 400, "m192": 700}  # 3000 steps, one core
    specs = [_pretrain(s, 3000, pre_est[s]) for s in sizes]
    t_est = 0.9 * steps + 15  # 8 mini-batches per step, validation every val_every steps
    # law across sizes (grpo, seed 0); the m96 run doubles as the methods' grpo seed 0
    specs += [_train(f"llm-grpo-{s}-s0", s, "grpo", 0, steps, val_every,
                     t_est * (2.0 if s in ("m128", "m192") else 1.0),
                     group="law" if len(sizes) > 1 else "methods") for s in sizes]
    for obj in METHOD_PARAMS:
        for seed in p["seeds"].get(obj, ()):
            if obj == "grpo" and seed == 0:
                continue
            specs.append(_train(f"llm-{obj}-m96-s{seed}", "m96", obj, seed, steps, val_every, t_est,
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
