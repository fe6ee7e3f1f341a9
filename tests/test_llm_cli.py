"""``entropy-mech pretrain / train / eval`` end to end with tiny settings, and the pretrain cache."""

import json

import pytest

from cli.main import main
from llm_rl.pretrain import PretrainConfig, cache_path, get_or_pretrain

TINY = ["--model-size", "hidden_size=32", "--model-size", "num_layers=1", "--model-size", "num_heads=2",
        "--model-size", "num_kv_heads=1", "--model-size", "intermediate_size=64"]


def test_pretrain_cache_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path))
    cfg = PretrainConfig(steps=3, n_train=64, n_val=8, batch_size=8,
                         model_sizes=dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                          intermediate_size=64))
    path, info = get_or_pretrain(cfg, progress=False)
    assert not info["cached"] and path == cache_path(cfg) and str(path).startswith(str(tmp_path))
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert set(info["val"]) >= {"acc_greedy", "acc_sampled", "acc_t1", "entropy"}
    path2, info2 = get_or_pretrain(cfg, progress=False)
    assert path2 == path and info2["cached"]
    other = PretrainConfig(**{**cfg.__dict__, "seed": 1})
    assert cache_path(other) != path
    with pytest.raises(ValueError, match="wrong_frac"):
        PretrainConfig(wrong_frac=1.5)


def test_cli_pretrain_train_eval_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path / "cache"))
    assert main(["pretrain", "--task", "countdown", "--steps", "3", "--batch-size", "8", "--no-progress",
                 "--n-train", "32", "--n-val", "8", *TINY]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    out = tmp_path / "run"
    args = ["train", "--task", "countdown", "--objective", "clip_cov", "--model", model, "--out", str(out),
            "--steps", "2", "--prompts-per-step", "2", "--group-size", "3", "--val-every", "1",
            "--no-dynamic-sampling", "--no-progress", "--n-train", "32", "--n-val", "8", "--val-samples", "1",
            "--objective-param", "clip_ratio=0.05", "--checkpoint-every", "1"]
    assert main(args) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and (out / "checkpoint.pt").is_file()
    capsys.readouterr()
    # resume a finished run with more steps
    saved = json.loads((out / "config.json").read_text())
    saved["config"]["steps"] = 3
    (out / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--val-samples", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0.0 <= res["acc_greedy"] <= 1.0 and res["task"] == "countdown"


def test_cli_fails_fast_with_choices(tmp_path, capsys):
    assert main(["train", "--task", "nope", "--out", str(tmp_path)]) == 2
    assert "choose one of: arithmetic, countdown" in capsys.readouterr().err
    assert main(["train", "--task", "arithmetic", "--objective", "bogus", "--out", str(tmp_path)]) == 2
    assert "kl_cov" in capsys.readouterr().err
    assert main(["pretrain", "--task", "arithmetic", "--knob", "n_terms=99"]) == 2
    assert "n_terms" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("task", ["arithmetic"])
def test_default_warm_start_is_uncertain(tmp_path, monkeypatch, task):
    """The default warm start (~3 min on one core): greedy and T=1 accuracy in [5%, 60%] and mean token
    entropy at T=1 >= 0.3 nats (measured: 39.8%, 37.9%, 0.367)."""
    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path))
    _, info = get_or_pretrain(PretrainConfig(task=task), progress=False)
    val = info["val"]
    assert 0.05 <= val["acc_t1"] <= 0.60 and 0.05 <= val["acc_greedy"] <= 0.60, val
    assert val["entropy"] >= 0.3, val
