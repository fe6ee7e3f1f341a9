"""Data parallelism: 2 processes on gloo (CPU) match 1 process on the same global batch (diagnostics
and the entropy-change decomposition included)."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from llm_rl.distributed import DistInfo

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import sys, torch, transformers
    from dataclasses import dataclass
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    from llm_rl import tasks as tasks_pkg
    from llm_rl.tasks.base import Problem, Task
    from llm_rl.config import DataConfig, ObjectiveConfig, OptimConfig, RolloutConfig, TrainConfig
    from llm_rl.trainer import Trainer

    @dataclass(frozen=True)
    class EvenLengthTask(Task):
        n_digits: int = 3
        name = "even_length"
        max_response_chars = 6
        def sample(self, rng):
            return Problem(str(rng.randint(0, 10**self.n_digits - 1)) + "=", 0)
        def verify(self, problem, response):
            return float(len(response) % 2 == 0)

    tasks_pkg.TASKS["even_length"] = EvenLengthTask
    model_dir, out = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(steps=2, model=model_dir, device="cpu", val_every=100, checkpoint_every=100,
                      diagnose_every=1,
                      data=DataConfig(task="even_length", n_train=64, n_val=4),
                      rollout=RolloutConfig(prompts_per_step=4, group_size=4, max_new_tokens=6),
                      objective=ObjectiveConfig(name="kl_cov", params={"kl_ratio": 0.05}),
                      optim=OptimConfig(micro_batch_size=3, num_minibatches=2, lr=3e-3))
    tr = Trainer(cfg, out, progress=False)
    recs = tr.train()
    if tr.dist.is_main:
        torch.save({"params": {k: v.detach() for k, v in tr.model.named_parameters()}, "recs": recs},
                   out + "/result.pt")
    from llm_rl.distributed import shutdown_distributed
    shutdown_distributed()
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_block_split():
    sizes = [DistInfo(r, 3).block(10) for r in range(3)]
    assert sizes == [(0, 4), (4, 7), (7, 10)]
    assert DistInfo(1, 4).block(2) == (1, 2) and DistInfo(3, 4).block(2) == (2, 2)


def test_two_processes_match_one(tmp_path):
    from llm_rl.model import build_default_policy, save_policy

    model, tok = build_default_policy(seed=0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=32)
    model_dir = save_policy(model, tok, tmp_path / "model")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    base = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    base.pop("WORLD_SIZE", None)
    single = subprocess.run([sys.executable, str(script), str(model_dir), str(tmp_path / "one")], env=base,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(model_dir), str(tmp_path / "two")],
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    one = torch.load(tmp_path / "one" / "result.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=False)
    for k, v in one["params"].items():
        torch.testing.assert_close(two["params"][k], v, rtol=1e-4, atol=1e-5)
    for r1, r2 in zip(one["recs"], two["recs"]):
        assert r1.get("reward/mean") == r2.get("reward/mean")
        assert r1.get("rollout/groups") == r2.get("rollout/groups")
        assert r1.get("objective/selected_count") == r2.get("objective/selected_count")
        if "entropy/train" in r1:
            assert r1["entropy/train"] == pytest.approx(r2["entropy/train"], rel=1e-4)
            assert r1["loss/policy"] == pytest.approx(r2["loss/policy"], rel=1e-3, abs=1e-5)
        # the entropy-change decomposition: loss gradients all-reduced over ranks, diagnosed on rank 0
        for key in ("diag/dH_obs_sum", "diag/dH_lin_sum", "diag/dH_own_sum", "diag/dH_cross_sum"):
            if "entropy/train" in r1:
                assert r1[key] == pytest.approx(r2[key], rel=1e-3, abs=1e-7), key
