"""Every invalid input is refused before any model is loaded or any run file is written: exit code 2 and a
message on stderr that names the bad value (and the valid range or the fix); nothing on stdout."""

import re

import pytest
import torch

from cli.main import main


@pytest.fixture
def sim_run(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", "--world", "bandit", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(cache))
    yield
    assert not cache.exists() or not any(cache.rglob("*.safetensors")), "a model was trained or loaded"


CASES = {
    "kl_ratio as a percent": (["train", "--task", "arithmetic", "--objective", "kl_cov",
                               "--objective-param", "kl_ratio=2"],
                              r"kl_ratio=2 is outside its valid range \[0, 1\]"),
    "negative eps_low": (["train", "--task", "arithmetic", "--objective-param", "eps_low=-0.1"],
                         r"eps_low=-0.1 is outside its valid range \[0, 1\]"),
    "clip_ratio 0.5": (["train", "--task", "arithmetic", "--objective", "clip_cov",
                        "--objective-param", "clip_ratio=0.5"], r"clip_ratio=0.5 selects 50% .*\[0, 0.05\]"),
    "unknown model size": (["pretrain", "--task", "arithmetic", "--model-size", "hidden=64"],
                           r"unknown model size\(s\) \['hidden'\]; valid keys: hidden_size"),
    "zero layers": (["pretrain", "--task", "arithmetic", "--model-size", "num_layers=0"],
                    "num_layers must be a positive int, got 0"),
    "prompt file without paths": (["train", "--task", "file"], "needs the knobs train_path and val_path"),
    "missing prompt file": (["train", "--task", "file", "--knob", "train_path=/nowhere/t.jsonl",
                             "--knob", "val_path=/nowhere/v.jsonl"], "/nowhere/t.jsonl"),
    "verify without instances": (["verify", "--instances", "0"], "--instances must be >= 1, got 0"),
    "verify max-n 1": (["verify", "--symbolic", "--max-n", "1"], r"--max-n must be in 2..6"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_named_reason(case, tmp_path, capsys):
    argv, message = CASES[case]
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"]
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith(f"entropy-mech {argv[0]}: error:")
    assert re.search(message, cap.err), cap.err
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_device_fails_before_the_warm_start(tmp_path, capsys):
    assert main(["train", "--task", "arithmetic", "--device", "cuda", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "device 'cuda' is not available here" in capsys.readouterr().err


def test_run_folder_inputs(sim_run, tmp_path, capsys):
    capsys.readouterr()
    cases = [
        (["eval", "--run", str(sim_run)], "is not a run of `entropy-mech train` (a simulator run?)"),
        (["diagnose", str(sim_run)], "has no metrics.jsonl"),
        (["simulate", "--world", "bandit", "--steps", "2", "--out", str(sim_run)],
         "already holds a simulator run: pass --overwrite"),
        (["figures", str(sim_run), "--out", str(sim_run / "summary.json")], "is a file, not a folder"),
        (["reproduce", "--out", str(sim_run / "summary.json"), "--report-only"], "is a file, not a folder"),
        (["fit", str(sim_run / "summary.json"), "--plot", str(tmp_path / "fit.xyz")], "unknown image format"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        cap = capsys.readouterr()
        assert message in cap.err and cap.out == "", (argv, cap)
    (sim_run / "arrays.npz").write_bytes((sim_run / "arrays.npz").read_bytes()[:100])
    assert main(["figures", str(sim_run), "--out", str(tmp_path / "figs")]) == 2
    assert "arrays.npz: truncated or corrupt .npz file" in capsys.readouterr().err
    assert main(["simulate", "--world", "bandit", "--steps", "2", "--out", str(sim_run), "--overwrite",
                 "--no-progress"]) == 0
