"""Rollout / update / end-to-end throughput (tokens/s) of the llm_rl trainer vs TRL's ``GRPOTrainer``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trainer_throughput.py [--steps 10] [--warmup 1]
        [--repeats 3] [--task arithmetic] [--model DIR] [--device cpu|cuda] [--json-out FILE]
        # TRL side: pip install '.[bench]'

Runs, in one process and on the same model directory (default: the cached warm start of ``--task``):

1. ``llm_rl`` with the default ``TrainConfig`` (dynamic sampling on) -- informational row;
2. ``llm_rl`` with the default config but ``dynamic_sampling=False`` -- the row compared with TRL, since
   TRL has no dynamic sampling (dropping zero-variance groups and re-sampling changes the batch);
3. ``trl.GRPOTrainer`` configured to match (2) (skipped, with an install hint, if trl is missing).

Each side runs ``--warmup`` rollout steps that are not timed, then ``--steps`` timed ones. One rollout step
= one generation round of ``prompts_per_step × group_size`` responses and ``ppo_epochs × num_minibatches``
optimizer steps. Reported per side: *rollout* = response tokens generated (up to and including <eos>, all
dynamic-sampling rounds) / generation time; *update* = response tokens trained (× epochs) / (step time −
generation time), i.e. everything else in the step: π_old re-scoring, rewards, advantages, forward,
backward, optimizer (ours: ``time/step_s − time/val_s − time/rollout_s``; TRL: wall time between
optimizer-step ends minus the time inside ``GRPOTrainer._generate``); *end-to-end* = generated tokens /
total step wall time. Validation of our trainer is excluded (TRL runs none).

Matched with TRL 1.16 (``GRPOConfig`` fields): same model weights, tokenizer and prompt text (``<bos>`` +
prompt, as ``llm_rl.rollout.encode_prompts``) in the same order (our epoch-0 permutation of the training
split, ``shuffle_dataset=False``); reward = our task verifier (0/1); ``num_generations`` = group_size;
``generation_batch_size`` = prompts_per_step × group_size; ``per_device_train_batch_size`` = one mini-batch
(or one micro-batch with ``gradient_accumulation_steps`` when a mini-batch is split);
``steps_per_generation`` = optimizer steps per epoch, ``num_iterations`` = ppo_epochs (so each round gets the
same number of optimizer steps, and TRL re-scores π_old after generation as we do);
``max_completion_length`` = our max_new_tokens; temperature 1, top_p 1, top_k 0, no min_p / repetition
penalty; ``beta=0`` (no reference model); ``epsilon`` = our eps_low=eps_high (0.2); ``loss_type="bnpo"``
(token mean over the mini-batch = our ``token-mean`` with whole-mini-batch denominators; ``"dapo"`` when
gradient accumulation is needed); ``scale_rewards="group"`` (GRPO advantages); AdamW with our lr, betas,
weight decay, constant schedule, no warm-up, grad-clip norm; both sides on ``--device``: fp32 on CPU
(``use_cpu``, ``bf16=False``), on CUDA bf16 autocast with fp32 master weights (``bf16=True`` on an fp32
model, as our trainer's autocast); no gradient checkpointing, no vLLM, no logging / reporting / saving.
``--json-out FILE`` also writes every row and the end-to-end ratio (``e2e_ratio``, None without TRL) as
JSON (``entropy-mech reproduce --profile gpu`` reads it).

Not matched: TRL samples with ``model.generate`` (its logits processors are identity at these settings;
it stops on <eos> like ours, but draws from the global RNG instead of our per-row seeded streams) and
its training forward gets no position ids (ours: ``cumsum(mask) - 1``); advantage eps 1e-4 (ours 1e-6;
both use the unbiased std); it shuffles a generation batch once for all epochs (we reshuffle each epoch);
it computes entropies in every training forward (we compute them once, in the π_old pass); our rollout
time includes verifying rewards and assembling the batch, TRL's ``_generate`` includes tokenizing and
decoding but not rewards (counted in its update time); TRL's wall time includes its Trainer loop
(dataloader, callbacks, metric bookkeeping). Dynamic sampling has no TRL equivalent (row 2 above).

Timing on a shared 2-core machine is noisy (±20 % between runs), so the sides run ``--repeats`` times,
interleaved, and each row shows the repeat with the smallest wall time, plus the end-to-end range over
repeats. TRL 1.16 runs with transformers 5.x on CPU as is; the only workaround here is silencing the
``is_gradient_checkpointing`` FutureWarning that TRL triggers and removing the ``PrinterCallback``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _make_config(args, model: str, **rollout_overrides):
    from llm_rl.config import DataConfig, RolloutConfig, TrainConfig

    return TrainConfig(steps=args.warmup + args.steps, model=model, device=args.device, val_every=10**6,
                       checkpoint_every=10**6, data=DataConfig(task=args.task),
                       rollout=RolloutConfig(**rollout_overrides))


def run_llm_rl(cfg, warmup: int) -> dict:
    """Train ``cfg`` and sum the timed steps' metrics (the first ``warmup`` steps are dropped)."""
    from llm_rl.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        recs = [r for r in Trainer(cfg, out, progress=False).train() if "time/rollout_s" in r][warmup:]
    wall = sum(r["time/step_s"] - r["time/val_s"] for r in recs)
    roll_s = sum(r["time/rollout_s"] for r in recs)
    n = cfg.rollout.group_size
    trained = sum(round(r.get("rollout/groups", 0) * n * r.get("rollout/response_len", 0)) for r in recs)
    trained *= cfg.optim.ppo_epochs
    return {"steps": len(recs), "gen_tok": sum(r["rollout/tokens"] for r in recs), "train_tok": trained,
            "rollout_s": roll_s, "update_s": wall - roll_s, "wall_s": wall}


def run_trl(cfg, warmup: int, out_dir: str, device: str = "cpu") -> dict:
    """Same measurement for ``trl.GRPOTrainer`` configured as ``cfg`` (see the module docstring)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from llm_rl.model import load_policy
    from llm_rl.tasks import make_splits, make_task
    from llm_rl.trainer import resolve_objective_name

    rc, o, oc = cfg.rollout, cfg.optim, cfg.objective
    if (resolve_objective_name(oc.name) != "ppo_clip" or oc.ref_kl_coef or oc.entropy_coef
            or oc.advantage != "grpo" or oc.agg_mode != "token-mean"):
        raise ValueError("the TRL comparison is only set up for the default grpo objective")
    task = make_task(cfg.data.task, **cfg.data.task_knobs)
    train, _ = make_splits(task, cfg.data.n_train, cfg.data.n_val, cfg.data.split_seed)
    model, tok = load_policy(cfg.model, device="cpu")
    # our trainer's epoch-0 prompt order (Trainer._next_prompts), so both sides see the same prompts per step
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003)).tolist()
    bos = tok.bos_token or ""
    data = Dataset.from_dict({"prompt": [bos + train[i].prompt for i in order], "idx": order})

    def verifier_reward(prompts, completions, idx, **_):
        return [task.verify(train[i], c) for i, c in zip(idx, completions)]

    batch = rc.prompts_per_step * rc.group_size
    if batch % o.num_minibatches:
        raise ValueError("TRL needs equal mini-batches: prompts_per_step * group_size % num_minibatches != 0")
    mini = batch // o.num_minibatches
    accum = -(-mini // o.micro_batch_size)
    if mini % accum:
        raise ValueError("TRL needs equal micro-batches inside a mini-batch")
    eps = {**{"eps_low": 0.2, "eps_high": 0.2}, **oc.params}
    if eps["eps_low"] != eps["eps_high"] or set(oc.params) - {"eps_low", "eps_high"}:
        raise ValueError("the TRL comparison needs eps_low == eps_high and no other objective params")
    targs = GRPOConfig(
        output_dir=out_dir, use_cpu=device == "cpu", bf16=device.startswith("cuda"), fp16=False,
        activation_checkpointing=False,
        seed=cfg.seed,
        report_to="none", logging_strategy="no", save_strategy="no", disable_tqdm=True,
        dataloader_pin_memory=False, max_steps=cfg.steps * o.num_minibatches * o.ppo_epochs,
        per_device_train_batch_size=mini // accum, gradient_accumulation_steps=accum,
        steps_per_generation=o.num_minibatches * accum, num_iterations=o.ppo_epochs,
        num_generations=rc.group_size, max_completion_length=rc.max_new_tokens or task.max_response_chars,
        temperature=rc.temperature, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0,
        use_vllm=False,
        shuffle_dataset=False, beta=0.0, epsilon=eps["eps_low"], scale_rewards="group",
        loss_type="bnpo" if accum == 1 else "dapo", mask_truncated_completions=False,
        learning_rate=o.lr, lr_scheduler_type="constant", warmup_steps=0, adam_beta1=o.betas[0],
        adam_beta2=o.betas[1], weight_decay=o.weight_decay, max_grad_norm=o.grad_clip or float("inf"),
    )
    trainer = GRPOTrainer(model=model, reward_funcs=verifier_reward, args=targs, train_dataset=data,
                          processing_class=tok)
    gens = []  # (seconds, completion tokens) per generation round
    step_ends = []  # perf_counter() at the end of each optimizer step
    generate = trainer._generate

    def timed_generate(prompts):
        t0 = time.perf_counter()
        res = generate(prompts)  # (prompt_ids, completion_ids, ...); completion_ids stop at the first <eos>
        gens.append((time.perf_counter() - t0, sum(len(c) for c in res[1])))
        return res

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    trainer._generate = timed_generate
    trainer.add_callback(StepClock())
    trainer.remove_callback(PrinterCallback)  # its end-of-training metrics dict would clutter the table
    with warnings.catch_warnings():  # TRL 1.16 calls model.is_gradient_checkpointing (deprecated in tf 5)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer.train()
    per_round = o.num_minibatches * o.ppo_epochs
    timed = gens[warmup:]
    wall = step_ends[-1] - step_ends[warmup * per_round - 1]  # from the warm-up round's end
    gen_tok = sum(n for _, n in timed)
    roll_s = sum(s for s, _ in timed)
    return {"steps": len(timed), "gen_tok": gen_tok, "train_tok": gen_tok * o.ppo_epochs,
            "rollout_s": roll_s, "update_s": wall - roll_s, "wall_s": wall}


def _rates(m: dict) -> tuple[float, float, float]:
    """rollout, update and end-to-end tokens/s of one measurement."""
    g = m["gen_tok"]
    return g / m["rollout_s"], m["train_tok"] / max(m["update_s"], 1e-9), g / m["wall_s"]


def main() -> int:
    """Run the measurements and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--steps", type=int, default=10, help="timed rollout steps per side and repeat")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rollout steps first (>= 1)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs; each side's fastest shown")
    ap.add_argument("--model", default="", help="model directory (default: the cached warm start)")
    ap.add_argument("--device", default="cpu", help="device of both trainers (cpu, cuda)")
    ap.add_argument("--json-out", default="", help="also write the measured rows to this JSON file")
    args = ap.parse_args()
    if min(args.steps, args.warmup, args.repeats) < 1:
        ap.error("--steps, --warmup and --repeats must be >= 1")
    import torch

    from cli.common import quiet_transformers
    from llm_rl.pretrain import PretrainConfig, get_or_pretrain
    from llm_rl.tasks import make_task

    quiet_transformers()
    model = args.model or str(get_or_pretrain(PretrainConfig(task=args.task))[0])
    default_cfg = _make_config(args, model)
    matched_cfg = _make_config(args, model, dynamic_sampling=False)
    r, o = matched_cfg.rollout, matched_cfg.optim
    max_new = r.max_new_tokens or make_task(args.task).max_response_chars
    print(f"model {model}\ntask {args.task}: {r.prompts_per_step} prompts x {r.group_size} responses, "
          f"max {max_new} new tokens, T={r.temperature}, {o.ppo_epochs} epoch(s) x "
          f"{o.num_minibatches} mini-batches, micro-batch {o.micro_batch_size}; {args.warmup} warm-up + "
          f"{args.steps} timed steps per side, {args.repeats} interleaved repeats; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    try:
        import trl
    except ImportError:
        trl = None
    dflt, matched = "llm_rl default (dyn. sampling)", "llm_rl matched (no dyn. sampl.)"
    sides = {dflt: lambda: run_llm_rl(default_cfg, args.warmup),
             matched: lambda: run_llm_rl(matched_cfg, args.warmup)}
    theirs = f"TRL {trl.__version__} GRPOTrainer" if trl is not None else None
    if trl is not None:
        def _trl():
            with tempfile.TemporaryDirectory() as tmp:
                return run_trl(matched_cfg, args.warmup, tmp, args.device)
        sides[theirs] = _trl
    t_start, runs = time.time(), {name: [] for name in sides}
    for _ in range(args.repeats):  # interleaved, so slow phases of a shared machine hit every side alike
        for name, fn in sides.items():
            runs[name].append(fn())
    best = {name: min(ms, key=lambda m: m["wall_s"]) for name, ms in runs.items()}
    print(f"\n{'':34s}{'rollout tok/s':>14s}{'update tok/s':>14s}{'end-to-end tok/s':>18s}"
          f"{'gen tok':>9s}{'wall s':>8s}  e2e over repeats")
    for name, m in best.items():
        e2e = sorted(_rates(x)[2] for x in runs[name])
        roll, upd, end = _rates(m)
        print(f"{name:34s}{roll:14.0f}{upd:14.0f}{end:18.0f}{m['gen_tok']:9d}{m['wall_s']:8.2f}"
              f"  {e2e[0]:.0f}-{e2e[-1]:.0f}")
    summary = {"device": args.device, "model": model, "task": args.task, "steps": args.steps,
               "warmup": args.warmup, "repeats": args.repeats, "threads": torch.get_num_threads(),
               "device_name": torch.cuda.get_device_name(torch.device(args.device))
               if args.device.startswith("cuda") else "cpu",
               "trl_version": None if trl is None else trl.__version__, "e2e_ratio": None,
               "rows": {name: dict(zip(("rollout_tok_s", "update_tok_s", "e2e_tok_s"), _rates(m)),
                                   gen_tok=m["gen_tok"], wall_s=m["wall_s"]) for name, m in best.items()}}
    if trl is None:
        print("\nTRL comparison skipped: trl is not installed (pip install '.[bench]')")
        _write_json(args.json_out, summary)
        return 0
    trl_rates = _rates(best[theirs])
    for name, label in ((dflt, "ratio default/TRL"), (matched, "ratio matched/TRL")):
        ratio = [a / b for a, b in zip(_rates(best[name]), trl_rates)]
        print(f"{label:34s}" + "".join(f"{x:13.2f}x" for x in ratio[:2]) + f"{ratio[2]:17.2f}x")
    e2e = _rates(best[matched])[2] / trl_rates[2]
    print(f"\n(rows: the fastest of {args.repeats} repeats per side; total {time.time() - t_start:.0f}s)\n"
          f"end-to-end ratio: {e2e:.2f}x (target >= 1.0x)")
    _write_json(args.json_out, {**summary, "e2e_ratio": e2e})
    return 0


def _write_json(path: str, obj: dict) -> None:
    if path:
        from rundir.files import atomic_write_json

        atomic_write_json(Path(path), obj)


if __name__ == "__main__":
    sys.exit(main())
