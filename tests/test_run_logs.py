"""figures/run_logs.py: (step, H, R) series from JSONL, CSV and TensorBoard logs, aligned by step."""

import builtins
import csv
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from rundir.logs import (
    align_to_preceding,
    detect_format,
    read_csv,
    read_jsonl,
    read_run_log,
    read_tensorboard,
)
from tolerances import ATOL_F32, ATOL_F64

# ----------------------------------------------------------------------------- fixtures written here

ENTROPY = {0: 1.0, 4: 0.8, 8: 0.6, 12: 0.5, 16: 0.45}
SCORE_SAME = {4: 0.2, 8: 0.3, 12: 0.35, 16: 0.37}          # logged at entropy steps
SCORE_OFF = {2: 0.1, 6: 0.25, 10: 0.32, 16: 0.37, 19: 0.38}  # mostly between entropy steps


def write_jsonl(path, entropy, score, *, ek="entropy/train", sk="val/acc", extra_lines=()):
    rows = {}
    for s, v in entropy.items():
        rows.setdefault(s, {"step": s, "loss/pg": 0.1})[ek] = v
    for s, v in score.items():
        rows.setdefault(s, {"step": s})[sk] = v
    lines = [json.dumps(rows[s]) for s in sorted(rows)] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path, entropy, score, *, step_col="step", ek="entropy/train", sk="val/acc"):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([step_col, ek, sk, "other"])
        for s in sorted(set(entropy) | set(score)):
            w.writerow([s, entropy.get(s, ""), score.get(s, ""), 1])
    return path


def write_tensorboard(logdir, entropy, score, *, ek="entropy/train", sk="val/acc"):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(logdir))
    for s, v in entropy.items():
        w.add_scalar(ek, v, global_step=s)
    for s, v in score.items():
        w.add_scalar(sk, v, global_step=s)
    w.add_scalar("loss/pg", 0.1, global_step=0)
    w.close()
    return logdir


def check_same_steps(series):
    assert_array_equal(series.step, [4, 8, 12, 16])
    assert_allclose(series.H, [0.8, 0.6, 0.5, 0.45], atol=ATOL_F32)
    assert_allclose(series.R, [0.2, 0.3, 0.35, 0.37], atol=ATOL_F32)
    assert_array_equal(series.entropy_step, series.step)
    assert not series.aligned and series.alignment_note() is None


def check_off_steps(series):
    # score at 2 -> entropy at 0; 6 -> 4; 10 -> 8; 16 -> 16 (same step); 19 -> 16
    assert_array_equal(series.step, [2, 6, 10, 16, 19])
    assert_array_equal(series.entropy_step, [0, 4, 8, 16, 16])
    assert_allclose(series.H, [1.0, 0.8, 0.6, 0.45, 0.45], atol=ATOL_F32)
    assert_allclose(series.R, [0.1, 0.25, 0.32, 0.37, 0.38], atol=ATOL_F32)
    assert series.aligned and series.n_shifted == 4 and series.n_unmatched == 0
    assert "nearest preceding" in series.alignment_note()


# ----------------------------------------------------------------------------- JSONL

def test_jsonl_same_and_shifted_steps(tmp_path):
    s = read_jsonl(write_jsonl(tmp_path / "a.jsonl", ENTROPY, SCORE_SAME))
    check_same_steps(s)
    assert s.format == "jsonl" and s.entropy_key == "entropy/train" and s.score_key == "val/acc"
    check_off_steps(read_jsonl(write_jsonl(tmp_path / "b.jsonl", ENTROPY, SCORE_OFF)))


def test_jsonl_custom_keys_and_scores_before_first_entropy(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", {5: 0.9, 10: 0.7}, {1: 0.0, 3: 0.05, 7: 0.2, 12: 0.3},
                    ek="actor/entropy", sk="val/score-all")
    s = read_jsonl(p, entropy_key="actor/entropy", score_key="val/score-all")
    assert_array_equal(s.step, [7, 12])
    assert_allclose(s.H, [0.9, 0.7], atol=ATOL_F64)
    assert s.n_unmatched == 2 and "2 scores before the first entropy value dropped" in s.alignment_note()


def test_jsonl_repeated_step_keeps_last_and_nan_is_kept(tmp_path):
    lines = ['{"step": 0, "entropy/train": 1.0}', '{"step": 4, "entropy/train": 0.9, "val/acc": 0.1}',
             '{"step": 4, "entropy/train": 0.8, "val/acc": NaN}', "", '{"step": 8, "entropy/train": 0.6}',
             '{"step": 8, "val/acc": 0.3}']
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(lines) + "\n")
    s = read_jsonl(p)
    assert_array_equal(s.step, [4, 8])
    assert_allclose(s.H, [0.8, 0.6], atol=ATOL_F64)
    assert np.isnan(s.R[0]) and s.R[1] == 0.3  # NaN is left for the law fit to drop and report


def test_jsonl_truncated_last_line_warns(tmp_path):
    p = write_jsonl(tmp_path / "t.jsonl", ENTROPY, SCORE_SAME, extra_lines=['{"step": 20, "entr'])
    with pytest.warns(UserWarning, match="truncated final line"):
        check_same_steps(read_jsonl(p))


@pytest.mark.parametrize("lines, match", [
    (['{"step": 0, "entropy/train": 1', '{"step": 1, "val/acc": 0.1}'], "not valid JSON"),
    (['[1, 2]', '{"step": 1, "val/acc": 0.1}'], "JSON object"),
    (['{"entropy/train": 1.0}'], "no 'step' key"),
    (['{"step": 1.5, "entropy/train": 1.0}'], "integer"),
    (['{"step": 1, "entropy/train": "high"}'], "expected a number"),
    (['{"step": 1, "entropy/train": 1.0, "val/score": 0.1}'],
     r"score key 'val/acc' not found; available: .*val/score"),
    (['{"step": 1, "val/acc": 0.1}'], "entropy key 'entropy/train' not found"),
    (['{"step": 1, "entropy/train": null, "val/acc": 0.1}'], "no values of entropy key"),
    (['{"step": 5, "entropy/train": 1.0}', '{"step": 1, "val/acc": 0.1}'], "precedes the first"),
])
def test_jsonl_errors(tmp_path, lines, match):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=match):
        read_jsonl(p)


# ----------------------------------------------------------------------------- CSV

def test_csv_same_and_shifted_steps(tmp_path):
    check_same_steps(read_csv(write_csv(tmp_path / "a.csv", ENTROPY, SCORE_SAME)))
    s = read_csv(write_csv(tmp_path / "b.csv", ENTROPY, SCORE_OFF, step_col="_step"))  # wandb export
    check_off_steps(s)
    assert s.format == "csv"


def test_csv_explicit_step_column_and_float_steps(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("global_step,ent,acc\n0.0,1.0,\n4.0,0.8,0.2\n8,0.6,0.3\n12,0.5,0.35\n")
    s = read_csv(p, entropy_key="ent", score_key="acc", step_key="global_step")
    assert_array_equal(s.step, [4, 8, 12])


@pytest.mark.parametrize("text, kw, match", [
    ("x,entropy/train,val/acc\n0,1,0.1\n", {}, r"step column \(tried"),
    ("step,entropy/train,val/acc\n0,1,0.1\n", {"step_key": "it"}, "step column 'it' not found"),
    ("step,entropy/train\n0,1\n", {}, "score column 'val/acc' not found"),
    ("step,entropy/train,val/acc\n0,1,oops\n", {}, "expected a number"),
    ("step,entropy/train,val/acc\nzero,1,0.1\n", {}, "expected a number"),
])
def test_csv_errors(tmp_path, text, kw, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_csv(p, **kw)


# ----------------------------------------------------------------------------- TensorBoard

def test_tensorboard_file_and_directory(tmp_path):
    d = write_tensorboard(tmp_path / "tb", ENTROPY, SCORE_OFF)
    s = read_tensorboard(d)
    check_off_steps(s)
    assert s.format == "tensorboard"
    event_file = next(d.glob("*tfevents*"))
    assert detect_format(event_file) == ("tensorboard", event_file)
    check_off_steps(read_run_log(event_file))
    with pytest.raises(ValueError, match=r"score tag 'val/score' not found; available: .*val/acc"):
        read_tensorboard(d, score_key="val/score")


def test_tensorboard_missing_package_gives_clear_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install"):
        read_tensorboard(tmp_path)


# ----------------------------------------------------------------------------- detection and dispatch

def test_detect_format_in_directories(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "metrics.jsonl", ENTROPY, SCORE_SAME)
    write_csv(run / "export.csv", ENTROPY, SCORE_SAME)
    assert detect_format(run) == ("jsonl", run / "metrics.jsonl")  # metrics.jsonl wins
    check_same_steps(read_run_log(run))
    only_csv = tmp_path / "csvonly"
    only_csv.mkdir()
    write_csv(only_csv / "x.csv", ENTROPY, SCORE_OFF)
    check_off_steps(read_run_log(only_csv))
    assert read_run_log(only_csv / "x.csv", fmt="csv").format == "csv"


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text("x"), "cannot tell the log format"),
    (lambda p: (p.mkdir(), (p / "a.jsonl").write_text(""), (p / "b.jsonl").write_text("")), "no single"),
    (lambda p: p.mkdir(), "no single"),
])
def test_detect_format_errors(tmp_path, setup, match):
    p = tmp_path / "log.txt"
    setup(p)
    with pytest.raises(ValueError, match=match):
        read_run_log(p)


def test_unknown_explicit_format(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", ENTROPY, SCORE_SAME)
    with pytest.raises(ValueError, match="unknown log format"):
        read_run_log(p, fmt="parquet")
    with pytest.raises(ValueError, match="no such file"):
        read_run_log(tmp_path / "missing.jsonl", fmt="jsonl")


# ----------------------------------------------------------------------------- alignment property

@given(st.lists(st.integers(0, 200), min_size=1, max_size=30, unique=True),
       st.lists(st.integers(0, 200), min_size=1, max_size=30, unique=True))
def test_alignment_picks_latest_entropy_at_or_before_each_score(h_steps, r_steps):
    H = [float(s) + 0.5 for s in h_steps]  # the value encodes its step
    R = [float(s) for s in r_steps]
    step, h, r, hstep, n_un = align_to_preceding(h_steps, H, r_steps, R)
    assert n_un == sum(s < min(h_steps) for s in r_steps)
    assert step.size + n_un == len(r_steps)
    assert np.all(np.diff(step) > 0) and np.all(hstep <= step)
    assert_array_equal(r, step.astype(float))
    assert_array_equal(h, hstep + 0.5)
    for s, hs in zip(step.tolist(), hstep.tolist()):
        assert hs == max(x for x in h_steps if x <= s)


def test_alignment_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        align_to_preceding([0, 1], [1.0], [0], [0.1])


# ----------------------------------------------------------------------------- verl and TRL logs

VERL_ACC = "val-core/openai/gsm8k/acc/mean@1"


def write_verl(path, entropy, score, *, sk=VERL_ACC, extra=None):
    """verl's file logger: one {"step": s, "data": {...}} line per step (trainer.logger=[file])."""
    lines = []
    for s in sorted(set(entropy) | set(score)):
        data = {"actor/pg_loss": 0.1, "timing_s/step": 3.0, **(extra or {})}
        if s in entropy:
            data["actor/entropy"] = entropy[s]
        if s in score:
            data[sk] = score[s]
            data["val-aux/openai/gsm8k/reward/mean@1"] = 0.0
        lines.append(json.dumps({"step": s, "data": data}))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_trainer_state(path, entropy, score, *, sk="eval_reward"):
    """transformers Trainer state: train logs (TRL GRPO logs "entropy") and eval logs ("eval_" prefix)."""
    hist = [{"loss": 0.1, "entropy": v, "reward": 0.3, "learning_rate": 1e-6, "step": s, "epoch": s / 20}
            for s, v in entropy.items()]
    hist += [{sk: v, "eval_entropy": 0.7, "eval_loss": 0.2, "step": s, "epoch": s / 20}
             for s, v in score.items()]
    hist.sort(key=lambda r: r["step"])
    path.write_text(json.dumps({"global_step": max(entropy), "log_history": hist, "best_metric": None}))
    return path


def test_verl_file_logger_auto_detected_with_default_keys(tmp_path):
    p = write_verl(tmp_path / "exp.jsonl", ENTROPY, SCORE_OFF)
    assert detect_format(p) == ("verl", p) and detect_format(tmp_path) == ("verl", p)
    s = read_run_log(p)
    assert (s.format, s.entropy_key, s.score_key) == ("verl", "actor/entropy", VERL_ACC)
    check_off_steps(s)


def test_verl_reward_fallback_and_explicit_keys(tmp_path):
    p = write_verl(tmp_path / "exp.jsonl", ENTROPY, SCORE_SAME, sk="val-core/math/reward/mean@4")
    assert read_run_log(p).score_key == "val-core/math/reward/mean@4"
    check_same_steps(read_run_log(p, score_key="val-core/math/reward/mean@4", fmt="verl"))


def test_verl_errors_list_the_available_keys(tmp_path):
    two = write_verl(tmp_path / "two.jsonl", ENTROPY, SCORE_SAME, extra={"val-core/aime/acc/mean@16": 0.1})
    with pytest.raises(ValueError, match="several score keys.*aime.*gsm8k"):
        read_run_log(two)
    none = write_verl(tmp_path / "none.jsonl", ENTROPY, SCORE_SAME, sk="val-aux/x/acc/mean@1")
    with pytest.raises(ValueError, match=r"default score key.*available: 'val-aux/"):
        read_run_log(none)
    with pytest.raises(ValueError, match=r"entropy key 'actor/ent' not found; available: 'actor/entropy'"):
        read_run_log(two, entropy_key="actor/ent", score_key=VERL_ACC)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "data": {"actor/entropy": 1.0}}\n{"step": 2, "metrics": {}}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not a verl file-logger line"):
        read_run_log(bad)


def test_trainer_state_file_checkpoint_and_output_directory(tmp_path):
    out = tmp_path / "trl_out"
    for step in (8, 20):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        write_trainer_state(out / f"checkpoint-{step}" / "trainer_state.json",
                            {k: v for k, v in ENTROPY.items() if k <= step},
                            {k: v for k, v in SCORE_OFF.items() if k <= step})
    latest = out / "checkpoint-20" / "trainer_state.json"
    assert detect_format(out) == ("trainer_state", latest)
    early = out / "checkpoint-8"
    assert detect_format(early) == ("trainer_state", early / "trainer_state.json")
    for where in (out, latest.parent, latest):
        s = read_run_log(where)
        assert (s.format, s.entropy_key, s.score_key) == ("trainer_state", "entropy", "eval_reward")
        check_off_steps(s)
    assert read_run_log(out / "checkpoint-8").step.tolist() == [2, 6]


def test_trainer_state_default_score_patterns_and_errors(tmp_path):
    acc = write_trainer_state(tmp_path / "a.json", ENTROPY, SCORE_SAME, sk="eval_accuracy")
    assert read_run_log(acc).score_key == "eval_accuracy"
    rw = write_trainer_state(tmp_path / "r.json", ENTROPY, SCORE_SAME, sk="eval_rewards/correct/mean")
    check_same_steps(read_run_log(rw))
    nothing = write_trainer_state(tmp_path / "n.json", ENTROPY, SCORE_SAME, sk="val_thing")
    with pytest.raises(ValueError, match=r"default score key.*available: .*'eval_entropy'"):
        read_run_log(nothing)
    with pytest.raises(ValueError, match="score key 'eval_acc' not found"):
        read_run_log(acc, score_key="eval_acc")
    (tmp_path / "x.json").write_text('{"global_step": 3}')
    with pytest.raises(ValueError, match="no 'log_history' list"):
        read_run_log(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read .* as JSON"):
        read_run_log(tmp_path / "y.json", fmt="trainer_state")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no trainer_state.json"):
        read_run_log(tmp_path / "empty", fmt="trainer_state")


def test_plain_jsonl_is_still_jsonl_and_defaults_unchanged(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", ENTROPY, SCORE_SAME)
    assert detect_format(p) == ("jsonl", p)
    s = read_run_log(p)
    assert (s.entropy_key, s.score_key) == ("entropy/train", "val/acc")
