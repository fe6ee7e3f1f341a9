"""verl-style prompt files (Parquet / JSONL) and the ``\\boxed{}`` verifier, with and without math-verify."""

import json
import random
import re
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_rl import verifiers
from llm_rl.tasks import PromptFileTask, load_prompt_file, make_splits, make_task
from llm_rl.verifiers import as_number, boxed_match


def arrow():
    """``(pyarrow, pyarrow.parquet)``, skipping the calling test when pyarrow is absent."""
    return pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")


def verl_row(i, prompt=None, answer=None):
    """One row as verl's data preprocessing writes it (prompt = chat messages, nested reward_model)."""
    return {"data_source": "toy/add", "ability": "math",
            "prompt": prompt if prompt is not None else [{"role": "user", "content": f"What is {i}+{i}?"}],
            "reward_model": {"style": "rule", "ground_truth": answer if answer is not None else str(2 * i)},
            "extra_info": {"split": "train", "index": i, "answer": f"{i}+{i}={2 * i}"}}


ROWS = [verl_row(0), verl_row(1, prompt=[{"role": "system", "content": "Answer in boxed form."},
                                         {"role": "user", "content": "Half of 1?"}], answer="\\frac{1}{2}"),
        verl_row(2), verl_row(3)]


def write_parquet(path, rows):
    pa, pq = arrow()
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------

def test_parquet_verl_layout(tmp_path):
    pa, pq = arrow()
    path = write_parquet(tmp_path / "train.parquet", ROWS)
    schema = pq.read_schema(path)  # really the nested verl layout, not strings
    assert pa.types.is_list(schema.field("prompt").type)
    assert pa.types.is_struct(schema.field("reward_model").type)
    assert pa.types.is_struct(schema.field("extra_info").type)
    probs = load_prompt_file(path)
    assert [p.prompt for p in probs] == ["What is 0+0?", "Answer in boxed form.\nHalf of 1?", "What is 2+2?",
                                         "What is 3+3?"]
    assert [p.answer for p in probs] == ["0", "\\frac{1}{2}", "4", "6"]
    # extra_info / ability / reward_model.style are ignored
    assert [p.meta for p in probs] == [{"data_source": "toy/add", "row": i} for i in range(4)]


STRING_ROWS = [verl_row(i, prompt=f"plain {i}?", answer="x^2+1") for i in range(3)]


@pytest.mark.parametrize("rows", [ROWS, STRING_ROWS], ids=["messages", "strings"])
def test_jsonl_and_parquet_round_trip(tmp_path, rows):
    a = load_prompt_file(write_parquet(tmp_path / "d.parquet", rows))
    b = load_prompt_file(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [(p.prompt, p.answer, p.meta) for p in a] == [(p.prompt, p.answer, p.meta) for p in b]
    assert len(a) == len(rows)


def test_numeric_ground_truth_and_blank_jsonl_lines(tmp_path):
    path = tmp_path / "n.jsonl"
    rows = [json.dumps(verl_row(0, answer=7)), json.dumps(verl_row(1, answer=" 0.5 "))]
    path.write_text("\ufeff\n" + rows[0] + "\n\n" + rows[1] + "\n", encoding="utf-8")  # BOM, blank lines
    probs = load_prompt_file(path)
    assert [p.answer for p in probs] == ["7", "0.5"]
    assert [p.meta["row"] for p in probs] == [1, 3]  # the 0-based line index


MALFORMED = [  # (name, bad row, message); the bad row is row 2, after two good rows
    ("missing prompt", {k: v for k, v in verl_row(9).items() if k != "prompt"},
     "'prompt' must be a non-empty"),
    ("empty prompt", verl_row(9, prompt=[]), "'prompt' must be a non-empty"),
    ("empty message", verl_row(9, prompt=[{"role": "user", "content": " "}]), "'prompt' must be a non-empty"),
    ("bad messages", verl_row(9, prompt=[{"role": "user", "content": None}]),
     "messages need a string 'content'"),
    ("no reward_model", {**verl_row(9), "reward_model": None}, "missing 'reward_model.ground_truth'"),
    ("None ground truth", {**verl_row(9), "reward_model": {"style": "rule", "ground_truth": None}},
     "missing 'reward_model.ground_truth'"),
    ("None data_source", {**verl_row(9), "data_source": None}, "'data_source' must be a string"),
]
JSONL_ONLY = [
    ("empty string prompt", verl_row(9, prompt=""), "'prompt' must be a non-empty"),
    ("message not a dict", verl_row(9, prompt=["hi"]), "messages need a string 'content'"),
    ("missing ground truth key", {**verl_row(9), "reward_model": {"style": "rule"}}, "missing 'reward_model"),
    ("empty ground truth", verl_row(9, answer="  "), "must be a non-empty string or a number"),
    ("list ground truth", verl_row(9, answer=["1", "2"]), "must be a non-empty string or a number"),
    ("bool ground truth", verl_row(9, answer=True), "must be a non-empty string or a number"),
    ("NaN ground truth", verl_row(9, answer=float("nan")), "must be a non-empty string or a number"),
    ("int data_source", {**verl_row(9), "data_source": 7}, "'data_source' must be a string"),
    ("not an object", [1, 2], "is not an object"),
]


def _expect_row_error(path, row, message):
    return pytest.raises(ValueError, match=re.escape(f"{path}: row {row}") + ".*" + re.escape(message))


def _ids(x):
    return x if isinstance(x, str) else ""


@pytest.mark.parametrize("name,bad,message", MALFORMED + JSONL_ONLY, ids=_ids)
def test_malformed_jsonl_row_names_file_and_row(tmp_path, name, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [verl_row(0), verl_row(1), bad, verl_row(3)])
    with _expect_row_error(path, 2, message):
        load_prompt_file(path)


@pytest.mark.parametrize("name,bad,message", MALFORMED, ids=_ids)
def test_malformed_parquet_row_names_file_and_row(tmp_path, name, bad, message):
    path = write_parquet(tmp_path / "bad.parquet", [verl_row(0), verl_row(1), bad, verl_row(3)])
    with _expect_row_error(path, 2, message):
        load_prompt_file(path)


def test_malformed_files(tmp_path):
    bad_json = tmp_path / "j.jsonl"
    bad_json.write_text(json.dumps(verl_row(0)) + "\n{not json\n")
    with _expect_row_error(bad_json, 1, "is not valid UTF-8 JSON"):
        load_prompt_file(bad_json)
    bad_utf8 = tmp_path / "u.jsonl"
    bad_utf8.write_bytes(json.dumps(verl_row(0)).encode() + b"\n\xff\xfe\n")
    with _expect_row_error(bad_utf8, 1, "is not valid UTF-8 JSON"):
        load_prompt_file(bad_utf8)
    csv = tmp_path / "x.csv"
    csv.write_text("prompt,answer\n")
    with pytest.raises(ValueError, match=re.escape(f"{csv}: unsupported file type '.csv'")):
        load_prompt_file(csv)
    nope = tmp_path / "nope.parquet"
    with pytest.raises(ValueError, match=re.escape(f"prompt file {nope} does not exist")):
        load_prompt_file(nope)
    for empty in (tmp_path / "e.jsonl", tmp_path / "w.jsonl"):
        empty.write_text("" if empty.name == "e.jsonl" else "\n  \n")
        with pytest.raises(ValueError, match=re.escape(f"{empty} has no rows")):
            load_prompt_file(empty)


def test_empty_and_corrupt_parquet(tmp_path):
    pa, pq = arrow()
    no_rows = tmp_path / "e.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS).slice(0, 0), no_rows)
    with pytest.raises(ValueError, match=re.escape(f"{no_rows} has no rows")):
        load_prompt_file(no_rows)
    corrupt = tmp_path / "c.parquet"
    corrupt.write_bytes(b"definitely not parquet")
    with pytest.raises(ValueError, match=re.escape(f"{corrupt}: cannot read as Parquet")):
        load_prompt_file(corrupt)


def test_missing_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "t.parquet", ROWS)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match=re.escape(f"reading {path} needs pyarrow")):
        load_prompt_file(path)


# ------------------------------------------------------------------------------------------------
# the task
# ------------------------------------------------------------------------------------------------

def test_file_task_splits_solutions_and_knob_errors(tmp_path):
    train = write_parquet(tmp_path / "train.parquet", ROWS)
    val = write_jsonl(tmp_path / "val.jsonl", ROWS[:2])
    task = make_task("file", train_path=str(train), val_path=str(val), max_new_tokens=16)
    assert isinstance(task, PromptFileTask) and task.max_response_chars == 16
    tr, va = make_splits(task, 3, 10)
    assert [p.prompt for p in tr] == [p.prompt for p in load_prompt_file(train)[:3]] and len(va) == 2
    with pytest.raises(ValueError, match="needs the knobs"):
        make_task("file", train_path=str(train))
    with pytest.raises(ValueError, match="must be strings"):
        make_task("file", train_path=123, val_path=str(val))
    with pytest.raises(ValueError, match=re.escape(f"prompt file {tmp_path / 'gone.jsonl'} does not exist")):
        make_splits(make_task("file", train_path=str(tmp_path / "gone.jsonl"), val_path=str(val)), 5, 1)


ANSWERS = ["0", "42", "-3", "0.5", "\\frac{1}{2}", "2\\sqrt{2}", "x^2+1", "(1,2)", "\\text{yes}"]


@pytest.mark.parametrize("with_math_verify", [True, False])
def test_solution_verifies_and_wrong_solution_does_not(tmp_path, monkeypatch, with_math_verify):
    if with_math_verify:
        pytest.importorskip("math_verify")
    else:
        monkeypatch.setitem(sys.modules, "math_verify", None)
    path = write_jsonl(tmp_path / "a.jsonl", [verl_row(i, answer=a) for i, a in enumerate(ANSWERS)])
    task = make_task("file", train_path=str(path), val_path=str(path))
    for p in load_prompt_file(path):
        assert task.verify(p, "so " + task.solution(p, random.Random(0))) == 1.0, p.answer
        assert task.verify(p, task.wrong_solution(p, random.Random(0))) == 0.0, p.answer


# ------------------------------------------------------------------------------------------------
# boxed_match
# ------------------------------------------------------------------------------------------------

EQUIVALENT = [(r"\boxed{\frac{1}{2}}", "0.5"), (r"\boxed{0.5}", r"\frac{1}{2}"), (r"\boxed{ 3 }", "3"),
              (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"), (r"\boxed{\frac{a}{b}}", r"\frac{a}{b}"),
              (r"\boxed{\dfrac{a}{b}}", r"\frac{a}{b}"), (r"\boxed{x^{2}+1}", "1+x^2"),
              (r"first \boxed{1}, finally \boxed{2}.", "2"), (r"\boxed{4 2.}", "42"), (r"$\boxed{-7}$", "-7")]
NOT_EQUIVALENT = [(r"first \boxed{1}, finally \boxed{2}", "1"), ("no box: 3", "3"), (r"\boxed{41}", "42"),
                  (r"\boxed{\frac{1}{}", "1"), (r"\boxed{\frac{{1}{2}}", "1"), (r"\boxed{\sqrt[}{x}}", "1"),
                  (r"\boxed{}", "0"), (r"\boxed{3}", ""), (r"\boxed{\frac{1}{0}}", "1"), (r"\boxed{x}", "y")]


def test_extract_boxed_nested_and_last():
    assert verifiers.extract_boxed(r"\boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert verifiers.extract_boxed(r"\boxed{1} and \boxed{ {2} }") == "{2}"
    assert verifiers.extract_boxed(r"\boxed{1} and \boxed{2") is None  # a truncated last box is no answer


@pytest.mark.parametrize("response,gt", EQUIVALENT + NOT_EQUIVALENT)
def test_boxed_match_with_math_verify(response, gt):
    pytest.importorskip("math_verify")
    assert boxed_match(response, gt) == float((response, gt) in EQUIVALENT)


def test_math_verify_call_order_is_gold_first(monkeypatch):
    mv = pytest.importorskip("math_verify")
    seen = []
    monkeypatch.setattr(mv, "verify", lambda gold, target, **kw: seen.append((gold, target)) or True)
    assert boxed_match(r"\boxed{0.5}", r"\frac{1}{2}") == 1.0
    assert seen == [(mv.parse(r"\boxed{\frac{1}{2}}"), mv.parse(r"\boxed{0.5}"))]


FALLBACK = {(r"\boxed{\frac{1}{2}}", "0.5"): 1.0, (r"\boxed{0.5}", r"\frac{1}{2}"): 1.0,
            (r"\boxed{ 3 }", "3"): 1.0,
            (r"\boxed{\dfrac{a}{b}}", r"\frac{a}{b}"): 1.0, (r"\boxed{\left( x \right)}", "(x)"): 1.0,
            (r"\boxed{-6/4}", r"-\frac{3}{2}"): 1.0, (r"\boxed{4 2.}", "42"): 1.0,
            (r"\boxed{42}", "42.0"): 1.0,
            (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"): 0.0,  # symbolic equivalence needs math-verify
            (r"\boxed{x^{2}+1}", "1+x^2"): 0.0, (r"\boxed{1/0}", "2/0"): 0.0}


@pytest.mark.parametrize("response,gt", list(FALLBACK))
def test_boxed_match_without_math_verify(monkeypatch, response, gt):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # `import math_verify` now raises ImportError
    assert boxed_match(response, gt) == FALLBACK[(response, gt)]


def test_fallback_rejects_the_non_equivalent_cases(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    assert [boxed_match(r, g) for r, g in NOT_EQUIVALENT] == [0.0] * len(NOT_EQUIVALENT)


def test_as_number():
    assert as_number(" -\\frac{3}{4} ") == as_number("-0.75") == as_number("-3/4")
    assert all(as_number(s) is None for s in ["1e5", "1/0", "abc", "", "-", "1.2.3", None, "9" * 61])


def test_math_verify_outside_main_thread_falls_back_with_one_warning(monkeypatch):
    pytest.importorskip("math_verify")
    monkeypatch.setattr(verifiers, "_thread_warned", False)
    out = []

    def work():
        out.append(boxed_match(r"\boxed{0.5}", r"\frac{1}{2}"))
        out.append(boxed_match(r"\boxed{2\sqrt{2}}", r"\sqrt{8}"))

    with pytest.warns(RuntimeWarning, match="main thread") as rec:
        th = threading.Thread(target=work)
        th.start()
        th.join()
    assert out == [1.0, 0.0] and len(rec) == 1  # fallback semantics, warned once (not silently all-wrong)


def test_math_verify_timeout_bounds_pathological_answers(monkeypatch):
    pytest.importorskip("math_verify")
    monkeypatch.setattr(verifiers, "MATH_VERIFY_TIMEOUT_S", 1)
    t = time.perf_counter()
    assert boxed_match(r"\boxed{10^{10^{10^{10}}}}", "1") == 0.0
    assert time.perf_counter() - t < 30  # bounded by the timeout (~1 s), not sympy's unbounded evaluation


LATEX_BITS = ["\\boxed{", "\\frac{", "\\sqrt{", "\\sqrt[", "{", "}", "}{", "^", "_", "\\left(", "\\right)",
              "1", "2", "0.5", "x", "-", "+", "/", "=", "\\pi", "\\infty", "\\text{", ",", " ", "$", "\\",
              "\\dfrac"]
LATEX = st.lists(st.sampled_from(LATEX_BITS), max_size=14).map("".join)
LATEX_GT = st.lists(st.sampled_from(LATEX_BITS[4:]), min_size=1, max_size=6).map("".join)


@settings(max_examples=40)
@given(response=LATEX | st.text(max_size=40), gt=LATEX_GT | st.text(min_size=1, max_size=8))
def test_boxed_match_never_raises(response, gt):
    assert boxed_match(response, gt) in (0.0, 1.0)
    assert boxed_match("\\boxed{" + response + "}", gt) in (0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# end to end: Trainer and `entropy-mech train --task file` on a tiny model
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    from llm_rl.model import build_default_policy, save_policy

    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path / "cache"))
    model, tok = build_default_policy(seed=0, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=64)
    return save_policy(model, tok, tmp_path / "model")


def test_trainer_runs_on_a_parquet_prompt_file(tiny_model, tmp_path):
    from llm_rl.config import DataConfig, OptimConfig, RolloutConfig, TrainConfig
    from rundir.records import read_records
    from llm_rl.trainer import Trainer

    # ROWS[1] joins two messages with "\n", which the char tokenizer encodes as <unk>: runs all the same
    train = write_parquet(tmp_path / "train.parquet", ROWS)
    val = write_parquet(tmp_path / "val.parquet", ROWS[:2])
    knobs = {"train_path": str(train), "val_path": str(val), "max_new_tokens": 6}
    cfg = TrainConfig(model=str(tiny_model), device="cpu", steps=2, val_every=1, checkpoint_every=100,
                      val_samples=1, data=DataConfig(task="file", task_knobs=knobs, n_train=4, n_val=2),
                      rollout=RolloutConfig(prompts_per_step=2, group_size=2, dynamic_sampling=False),
                      optim=OptimConfig(micro_batch_size=4, num_minibatches=1, lr=1e-3))
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    assert isinstance(tr.task, PromptFileTask) and tr.max_new == 6
    assert len(tr.train_set) == 4 and len(tr.val_set) == 2
    tr.train()
    recs = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2] and all(0.0 <= r["val/acc"] <= 1.0 for r in recs)
    rewards = [r["reward/mean"] for r in recs if "reward/mean" in r]
    assert len(rewards) == 2 and all(0.0 <= x <= 1.0 for x in rewards)


def test_cli_train_task_file(tiny_model, tmp_path, capsys):
    from cli.main import main

    train = write_parquet(tmp_path / "train.parquet", ROWS)
    val = write_jsonl(tmp_path / "val.jsonl", ROWS[:2])
    out = tmp_path / "run"
    args = ["train", "--task", "file", "--knob", f"train_path={train}", "--knob", f"val_path={val}",
            "--knob", "max_new_tokens=4", "--model", str(tiny_model), "--out", str(out), "--steps", "1",
            "--prompts-per-step", "2", "--group-size", "2", "--no-dynamic-sampling", "--no-progress",
            "--n-train", "4", "--n-val", "2", "--val-samples", "1", "--val-every", "1", "--device", "cpu"]
    assert main(args) == 0
    saved = json.loads((out / "config.json").read_text())["config"]["data"]
    assert saved["task"] == "file" and saved["task_knobs"] == {"train_path": str(train), "val_path": str(val),
                                                               "max_new_tokens": 4}
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    bad = write_jsonl(tmp_path / "bad.jsonl", [verl_row(0), {**verl_row(1), "reward_model": {}}])
    assert main([*args[:4], f"train_path={bad}", *args[5:]]) == 2
    assert f"{bad}: row 1: missing 'reward_model.ground_truth'" in capsys.readouterr().err


def test_warm_start_cache_key_follows_file_content(tmp_path):
    """A prompt file edited in place must not be served a stale cached warm start."""
    from llm_rl.pretrain import PretrainConfig

    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    knobs = {"train_path": str(path), "val_path": str(path)}
    before = PretrainConfig(task="file", task_knobs=knobs, n_train=2, n_val=2).digest()
    assert PretrainConfig(task="file", task_knobs=knobs, n_train=2, n_val=2).digest() == before
    write_jsonl(path, ROWS[::-1])
    assert PretrainConfig(task="file", task_knobs=knobs, n_train=2, n_val=2).digest() != before


def test_math_verify_log_messages_are_truncated(caplog):
    """math-verify's timeout warning echoes its whole input; ours cuts it to LOG_MESSAGE_MAX_CHARS."""
    import logging

    from llm_rl.verifiers import LOG_MESSAGE_MAX_CHARS, _quiet_math_verify_logs

    _quiet_math_verify_logs()
    huge = "1+" * 50_000
    with caplog.at_level(logging.WARNING, logger="math_verify.parser"):
        logging.getLogger("math_verify.parser").warning(f"Timeout during parsing: {huge}")
    (msg,) = [r.getMessage() for r in caplog.records]
    assert len(msg) < LOG_MESSAGE_MAX_CHARS + 60 and msg.endswith("more characters]")
