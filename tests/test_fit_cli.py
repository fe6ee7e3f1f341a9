"""`entropy-mech fit` (figures/fit_cli.py) through the real entry point cli.main.main."""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cli.main import main
from theory.law import law_predict

A, B = 0.3, 0.75


def write_log(path, *, n=60, noise=0.005, entropy_every=1, score_every=1, score_offset=0, seed=0, nan_at=()):
    """JSONL run: entropy every `entropy_every` steps, score every `score_every` steps from `score_offset`.

    The score follows the law at the entropy of the nearest preceding logged step, the one the reader
    pairs it with, so (A, B) is the truth for shifted logs too."""
    rng = np.random.default_rng(seed)
    lines = []
    for step in range(n):
        h = 0.05 + 1.1 * np.exp(-(step - step % entropy_every) / 12)
        rec = {"step": step}
        if step % entropy_every == 0:
            rec["entropy/train"] = h
        if step % score_every == score_offset:
            rec["val/acc"] = float("nan") if step in nan_at else float(law_predict(h, A, B) +
                                                                        noise * rng.standard_normal())
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_table_output(tmp_path, capsys):
    log = write_log(tmp_path / "metrics.jsonl")
    assert main(["fit", str(log), "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    for text in ("R = -a*exp(H) + b", "95% CI", "ceiling b - a", "R^2", "RMSE",
                 "early RMSE (fit first 9 pts)", "reverse RMSE (fit last 9 pts)", "best form by AIC",
                 "exponential", str(log)):
        assert text in out, text
    a_line = next(ln for ln in out.splitlines() if ln.strip().startswith("a "))
    a_hat, lo, hi = (float(v.strip("[],")) for v in a_line.split()[1:4])
    assert lo < a_hat < hi and abs(a_hat - A) < 0.02
    assert "note:" not in out  # same steps, nothing dropped


def test_json_output_and_alignment_note(tmp_path, capsys):
    same = write_log(tmp_path / "same.jsonl")
    shifted = write_log(tmp_path / "shifted.jsonl", n=120, entropy_every=2, score_every=4, score_offset=3,
                        nan_at=(7,))
    assert main(["fit", str(same), str(shifted), "--json", "--n-boot", "100", "--early", "0.2"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)  # stdout is pure JSON; notes go to stderr
    assert [r["path"] for r in res] == [str(same), str(shifted)]
    for r in res:
        assert_allclose([r["fit"]["a"], r["fit"]["b"]], [A, B], atol=0.03)
        assert r["fit"]["a_ci"][0] <= r["fit"]["a"] <= r["fit"]["a_ci"][1]
        assert r["early_prediction"]["fraction"] == 0.2
        assert r["best_form"] == r["forms"][0]["name"]
        assert {f["name"] for f in r["forms"]} == {"exponential", "linear", "power"}
    assert res[0]["alignment"] == {"aligned": False, "n_shifted": 0, "n_unmatched": 0}
    assert res[1]["alignment"]["aligned"] and res[1]["alignment"]["n_shifted"] == 30
    assert res[1]["fit"]["n_dropped"] == 1 and res[1]["fit"]["n_points"] == 29
    assert "nearest preceding step" in cap.err and "dropped 1 of 30 rows" in cap.err


def test_table_mentions_alignment(tmp_path, capsys):
    log = write_log(tmp_path / "m.jsonl", n=120, entropy_every=2, score_every=4, score_offset=1)
    assert main(["fit", str(log), "--n-boot", "0"]) == 0
    out = capsys.readouterr().out
    assert "note:" in out and "logged at different steps" in out
    a_line = next(ln for ln in out.splitlines() if ln.strip().startswith("a "))
    assert "95% CI" not in out and "[" not in a_line  # --n-boot 0: no intervals


def test_plot_is_written(tmp_path, capsys):
    log = write_log(tmp_path / "metrics.jsonl")
    png = tmp_path / "out" / "fit.png"
    assert main(["fit", str(log), "--n-boot", "50", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().out
    assert not [p for p in png.parent.iterdir() if p.name != "fit.png"]  # no temp file left behind


def test_failures_are_reported_and_other_logs_still_fitted(tmp_path, capsys):
    good = write_log(tmp_path / "good.jsonl")
    assert main(["fit", str(tmp_path / "missing.jsonl"), str(good), "--n-boot", "0"]) == 2  # bad input
    cap = capsys.readouterr()
    assert "missing.jsonl: no such file" in cap.err
    assert str(good) in cap.out
    assert main(["fit", str(good), "--score-key", "val/nope", "--n-boot", "0"]) == 2
    assert "score key 'val/nope' not found" in capsys.readouterr().err


def test_early_prediction_skipped_on_short_log(tmp_path, capsys):
    log = write_log(tmp_path / "short.jsonl", n=8)
    assert main(["fit", str(log), "--n-boot", "0", "--json"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out)[0]
    assert r["early_prediction"] is None and "at least 3" in r["early_prediction_error"]
    assert "early-prediction test skipped" in cap.err


@pytest.mark.parametrize("flag, value", [("--early", "1.5"), ("--n-boot", "-3"), ("--ci", "95")])
def test_bad_options(tmp_path, capsys, flag, value):
    log = write_log(tmp_path / "m.jsonl")
    assert main(["fit", str(log), flag, value]) == 2
    assert flag in capsys.readouterr().err


def _law_points(n=40, seed=0):
    rng = np.random.default_rng(seed)
    h = 0.05 + 1.1 * np.exp(-np.arange(n) / 12)
    return h, law_predict(h, A, B) + 0.005 * rng.standard_normal(n)


def test_fit_reads_verl_and_trl_logs_with_default_keys(tmp_path, capsys):
    h, r = _law_points()
    verl = tmp_path / "verl_exp.jsonl"
    acc = "val-core/openai/gsm8k/acc/mean@1"
    data = [{"actor/entropy": float(h[s]), "actor/pg_loss": 0.1, acc: float(r[s])} for s in range(len(h))]
    verl.write_text("\n".join(json.dumps({"step": s, "data": d}) for s, d in enumerate(data)) + "\n")
    ckpt = tmp_path / "trl_out" / "checkpoint-40"
    ckpt.mkdir(parents=True)
    hist = [rec for s in range(len(h)) for rec in ({"entropy": float(h[s]), "loss": 0.0, "step": s},
                                                   {"eval_reward": float(r[s]), "eval_loss": 0.1, "step": s})]
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 40, "log_history": hist}))
    assert main(["fit", str(verl), str(tmp_path / "trl_out"), "--n-boot", "0", "--json"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert [x["format"] for x in res] == ["verl", "trainer_state"]
    assert [(x["entropy_key"], x["score_key"]) for x in res] == [
        ("actor/entropy", "val-core/openai/gsm8k/acc/mean@1"), ("entropy", "eval_reward")]
    for x in res:
        assert_allclose([x["fit"]["a"], x["fit"]["b"]], [A, B], atol=0.02)
    assert "score key 'val-core/openai/gsm8k/acc/mean@1' is the verl default" in captured.err


def test_fit_missing_default_key_lists_available_keys(tmp_path, capsys):
    p = tmp_path / "exp.jsonl"
    p.write_text(json.dumps({"step": 1, "data": {"actor/entropy": 1.0, "val-aux/x/acc/mean@1": 0.2}}) + "\n")
    assert main(["fit", str(p), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err
    assert "default score key" in err and "'val-aux/x/acc/mean@1'" in err
