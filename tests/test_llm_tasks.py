"""Tasks, splits and verifiers of llm_rl (fast; hypothesis-fuzzed verifiers)."""

import json
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_rl.tasks import TASKS, make_splits, make_task
from llm_rl.verifiers import boxed_match, extract_boxed, extract_final_int, safe_eval

TASK_NAMES = sorted(t for t in TASKS if t != "file")  # file-backed task tested below


@pytest.mark.parametrize("name", TASK_NAMES)
def test_solutions_verify_and_wrong_ones_do_not(name):
    task = make_task(name)
    train, val = make_splits(task, 300, 50, seed=1)
    rng = random.Random(0)
    for p in train + val:
        assert task.verify(p, task.solution(p, rng)) == 1.0
        assert task.verify(p, task.wrong_solution(p, rng)) == 0.0


@pytest.mark.parametrize("name", TASK_NAMES)
def test_splits_fixed_and_disjoint(name):
    task = make_task(name)
    tr1, va1 = make_splits(task, 200, 40, seed=3)
    tr2, va2 = make_splits(task, 200, 40, seed=3)
    assert [p.prompt for p in tr1] == [p.prompt for p in tr2] and [p.prompt for p in va1] == [p.prompt for p in va2]
    assert not {p.prompt for p in tr1} & {p.prompt for p in va1}
    assert len({p.prompt for p in tr1}) == 200
    tr3, _ = make_splits(task, 200, 40, seed=4)
    assert [p.prompt for p in tr3] != [p.prompt for p in tr1]


def test_difficulty_knobs_and_errors():
    hard = make_task("arithmetic", n_terms=5, max_operand=99, ops="+-*")
    p = hard.sample(random.Random(0))
    assert p.prompt.count("=") == 1 and len(p.meta["nums"]) == 5
    with pytest.raises(ValueError, match="choose one of: arithmetic, countdown"):
        make_task("nope")
    with pytest.raises(ValueError, match="valid knobs"):
        make_task("countdown", n_terms=3)
    with pytest.raises(ValueError):
        make_task("arithmetic", ops="/")
    with pytest.raises(ValueError, match="too few distinct"):
        make_splits(make_task("arithmetic", n_terms=2, max_operand=1, ops="+"), 50, 5)


def test_safe_eval_semantics():
    assert safe_eval("3*5+7") == (Fraction(22), [3, 5, 7])
    assert safe_eval("(8-2)/4")[0] == Fraction(3, 2)
    for bad in ["1/0", "__import__('os')", "2**10", "-3+1", "1e5", "abc", "", "(" * 500 + "1" + ")" * 500,
                "9999999+1", "1;2", "3 5", "True+1"]:
        assert safe_eval(bad) is None, bad


def test_countdown_number_usage():
    task = make_task("countdown")
    p = task.sample(random.Random(5))
    a, b, c = p.meta["nums"]
    assert task.verify(p, f"{a}+{a}+{a}+{a}+{a}") in (0.0,)  # overuse of a number is rejected
    assert task.verify(p, str(p.answer)) == float(p.answer in p.meta["nums"])


def test_extractors():
    assert extract_final_int("3,4#12") == 12 and extract_final_int("#-5 ") == -5
    assert extract_final_int("12") is None and extract_final_int("#1#x") is None
    assert extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert boxed_match(r"\boxed{42}", "42") == 1.0 and boxed_match(r"\boxed{4 2.}", "42") == 1.0
    assert boxed_match(r"\boxed{41}", "42") == 0.0 and boxed_match("42", "42") == 0.0


@pytest.mark.parametrize("name", TASK_NAMES)
@given(text=st.text(max_size=60) | st.text(alphabet="0123456789+-*/()#, ", max_size=40))
def test_verifiers_never_raise(name, text):
    task = make_task(name)
    p = task.sample(random.Random(len(text)))
    assert task.verify(p, text) in (0.0, 1.0)
    assert boxed_match(text, "3") in (0.0, 1.0)
    assert boxed_match("\\boxed{" + text, text) in (0.0, 1.0)
    r = safe_eval(text)
    assert r is None or isinstance(r[0], Fraction)


@given(a=st.integers(0, 50), b=st.integers(1, 50), c=st.integers(0, 50), ops=st.sampled_from(["+-", "*-", "+*"]))
def test_safe_eval_matches_python_arithmetic(a, b, c, ops):
    expr = f"{a}{ops[0]}{b}{ops[1]}{c}"
    val = a
    # reference via operator precedence done by hand
    if ops[1] == "*":
        val = {"+": a + b * c, "-": a - b * c}[ops[0]] if ops[0] != "*" else a * b * c
    elif ops[0] == "*":
        val = a * b + c if ops[1] == "+" else a * b - c
    else:
        val = (a + b if ops[0] == "+" else a - b) + (c if ops[1] == "+" else -c)
    assert safe_eval(expr)[0] == val


def test_prompt_file_task_jsonl(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "What is 6*7?"}], "data_source": "toy",
             "reward_model": {"ground_truth": "42"}},
            {"prompt": "1+1?", "data_source": "toy", "reward_model": {"ground_truth": "2"}}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = make_task("file", train_path=str(path), val_path=str(path))
    train, val = make_splits(task, 10, 1)
    assert [p.prompt for p in train] == ["What is 6*7?", "1+1?"] and len(val) == 1
    assert task.verify(train[0], r"so \boxed{42}") == 1.0 and task.verify(train[0], "42") == 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "x", "data_source": "toy"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: row 1: missing 'reward_model.ground_truth'"):
        make_splits(make_task("file", train_path=str(bad), val_path=str(path)), 5, 1)
    with pytest.raises(ValueError, match="unsupported file type"):
        make_splits(make_task("file", train_path=str(tmp_path / "x.csv"), val_path=str(path)), 5, 1) if (tmp_path / "x.csv").write_text("a") else None
    with pytest.raises(ValueError, match="needs the knobs"):
        make_task("file")
