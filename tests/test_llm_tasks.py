"""Tasks, splits and verifiers of llm_rl (fast; hypothesis-fuzzed verifiers)."""

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_rl.tasks import TASKS, make_splits, make_task
from llm_rl.verifiers import boxed_match, extract_boxed, extract_final_int, safe_eval

TASK_NAMES = sorted(t for t in TASKS if t != "file")  # file-backed task: tests/test_llm_prompt_file.py


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
    assert ([p.prompt for p in tr1] == [p.prompt for p in tr2]
            and [p.prompt for p in va1] == [p.prompt for p in va2])
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


@given(a=st.integers(0, 50), b=st.integers(1, 50), c=st.integers(0, 50),
       ops=st.sampled_from(["+-", "*-", "+*"]))
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


def test_arithmetic_misconception_rules():
    """Forget units carries/borrows and subtract smaller from larger, for non-negative operands only."""
    from llm_rl.tasks.arithmetic import _apply_misconceived

    assert _apply_misconceived(18, "+", 5) == 13  # carry dropped
    assert _apply_misconceived(13, "+", 5) == 18  # no carry: correct
    assert _apply_misconceived(13, "-", 5) == 18  # borrow dropped
    assert _apply_misconceived(2, "-", 5) == 3  # smaller from larger
    assert _apply_misconceived(3, "-", 12) == 19  # both: 12 - 3 with the borrow dropped
    assert _apply_misconceived(-4, "+", 8) == 4  # negative operand: correct
    task = make_task("arithmetic")
    rng = random.Random(0)
    n_applies = 0
    for _ in range(300):
        p = task.sample(rng)
        wrong = task.misconceived_solution(p)
        if wrong is None:
            continue
        n_applies += 1
        assert task.verify(p, wrong) == 0.0 and wrong.count("#") == 1
    assert 0.4 < n_applies / 300 < 0.9  # default knobs: about two thirds of problems are affected
    assert make_task("countdown").misconceived_solution(make_task("countdown").sample(rng)) is None


def test_pretrain_mixture_fractions():
    from llm_rl.pretrain import PretrainConfig, _training_response

    with pytest.raises(ValueError, match="must be < 1"):
        PretrainConfig(wrong_frac=0.5, misconception_frac=0.5)
    with pytest.raises(ValueError, match="fraction"):
        PretrainConfig(misconception_frac=1.5)
    cfg = PretrainConfig(wrong_frac=0.2, misconception_frac=0.5)
    task, rng = make_task("arithmetic"), random.Random(1)
    p = next(q for q in iter(lambda: task.sample(rng), None) if task.misconceived_solution(q) is not None)
    draws = [_training_response(task, p, rng, cfg) for _ in range(4000)]
    share = {k: sum(d == v for d in draws) / len(draws)
             for k, v in (("misconceived", task.misconceived_solution(p)),
                          ("correct", task.solution(p, rng)))}
    assert abs(share["misconceived"] - 0.5) < 0.04 and abs(share["correct"] - 0.3) < 0.04, share
