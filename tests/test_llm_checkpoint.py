"""Checkpoints load as plain data only (weights_only): a crafted pickle runs no code; a truncated file
gives a clear error naming it."""

import pickle

import pytest
import torch

from llm_rl.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the code a malicious checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _save_real(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    gens = {"rollout": torch.Generator().manual_seed(1)}
    return save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, generators=gens, step=3,
                           cursor={"epoch": 1, "pos": 5}, extra={"note": "x"})


def test_round_trip_with_weights_only(tmp_path):
    _save_real(tmp_path)
    ck = load_checkpoint(tmp_path)
    assert ck["step"] == 3 and ck["cursor"] == {"epoch": 1, "pos": 5} and ck["extra"] == {"note": "x"}
    assert set(ck["model"]) == {"weight", "bias"}


def test_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker), "optimizer": {}, "scheduler": {}, "rng": {}, "step": 0,
                "cursor": {}},
               tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="other than tensors and plain data"):
        load_checkpoint(tmp_path)
    assert not marker.exists()
    # the same payload through plain pickle does run code: the test's payload is real
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_truncated_checkpoint_is_named(tmp_path):
    path = _save_real(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{CHECKPOINT_NAME} is truncated or corrupt"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
