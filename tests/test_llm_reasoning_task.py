"""The reasoning-length ``stepwise`` task: format, verifier, lengths, splits, misconception, knob errors."""

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_rl.tasks import TASKS, StepwiseTask, make_splits, make_task
from llm_rl.tasks.stepwise import PREFIXES, SEPARATORS, TIDY
from llm_rl.tasks.base import Problem
from llm_rl.tokenizer import ALPHABET
from llm_rl.verifiers import extract_boxed_int

STEP_RE = re.compile(r"(-?\d+)([+\-*])(\d+)=(-?\d+);")
# a step of the variety format: prefix, a, space, op, space, b, space, '=', space, result, separator
VSTEP_RE = re.compile(r"([#>?]?)(-?\d+)( ?)([+\-*])( ?)(-?\d+)( ?)=( ?)(-?\d+)([;,:|])")


PLAIN = {"variety": False}


def _problems(task=None, n=400, seed=0):
    task = task or make_task("stepwise", **PLAIN)
    train, val = make_splits(task, n, 50, seed=seed)
    return task, train + val


def _parse(response: str) -> tuple[list[tuple[int, str, int, int]], int]:
    """The written steps (a, op, b, result) and the boxed answer of a well-formed response."""
    body, box = response.split("\\boxed{")
    steps = [(int(a), op, int(b), int(r)) for a, op, b, r in STEP_RE.findall(body)]
    assert "".join(f"{a}{op}{b}={r};" for a, op, b, r in steps) == body
    return steps, int(box.rstrip("}"))


def _parse_variety(response: str, nums) -> tuple[list[tuple[int, str, int, int]], int, list[tuple]]:
    """As :func:`_parse` for the ``variety`` format: the steps in canonical order (running value first,
    given the problem's operands ``nums``), the boxed answer and each step's surface
    (prefix, swapped, four spaces, separator)."""
    body, box = response.split("\\boxed{")
    found = VSTEP_RE.findall(body)
    assert "".join("".join(f[:7]) + "=" + "".join(f[7:]) for f in found) == body, response
    steps, surfaces = [], []
    for (pre, a, s1, op, s2, b, s3, s4, r, sep), n in zip(found, nums[1:]):
        a, b, r = int(a), int(b), int(r)
        swapped = b != n  # (when the running value equals n the order is unobservable: not swapped)
        if swapped:
            assert a == n and op in "+*", response  # only a commutative step may swap its operands
            a, b = b, a
        steps.append((a, op, b, r))
        surfaces.append((pre, swapped, s1, s2, s3, s4, sep))
    return steps, int(box.rstrip("}")), surfaces


def _value(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


def test_registered_and_documented():
    assert TASKS["stepwise"] is StepwiseTask and make_task("stepwise").name == "stepwise"
    import llm_rl.tasks.stepwise as module

    assert "\\boxed{25}" in module.__doc__ and "Difficulty knobs" in module.__doc__
    assert make_task("stepwise").variety is True  # the varied surface is the default (module docstring)
    assert make_task("stepwise").style_signal == 0.6  # the measured default (module docstring)


def test_solution_format_one_equation_per_step():
    task = make_task("stepwise", **PLAIN)
    p = Problem("12+7-5+8+3=", 25, {"nums": (12, 7, 5, 8, 3), "ops": ("+", "-", "+", "+")})
    assert task.solution(p, random.Random(0)) == "12+7=19;19-5=14;14+8=22;22+3=25;\\boxed{25}"
    task, probs = _problems()
    rng = random.Random(1)
    for p in probs:
        steps, boxed = _parse(task.solution(p, rng))
        assert len(steps) == task.n_terms - 1 and boxed == p.answer == steps[-1][3]
        assert all(_value(a, op, b) == r for a, op, b, r in steps)
        assert [s[0] for s in steps[1:]] == [s[3] for s in steps[:-1]]  # each step continues the last
        assert p.prompt == str(steps[0][0]) + "".join(op + str(b) for _, op, b, _ in steps) + "="


def test_wrong_solution_one_slip_continued_consistently():
    task, probs = _problems(make_task("stepwise", ops="+-*", max_operand=9, **PLAIN))
    rng = random.Random(2)
    for p in probs:
        steps, boxed = _parse(task.wrong_solution(p, rng))
        false = [i for i, (a, op, b, r) in enumerate(steps) if _value(a, op, b) != r]
        assert len(false) == 1
        assert steps[false[0]][3] - _value(*steps[false[0]][:3]) in (-10, -2, -1, 1, 2, 10)
        assert [s[0] for s in steps[1:]] == [s[3] for s in steps[:-1]]
        assert boxed == steps[-1][3] != p.answer
        assert task.verify(p, task.wrong_solution(p, rng)) == 0.0


def test_misconception_is_systematic_and_often_changes_the_answer():
    task, probs = _problems()
    changed = 0
    for p in probs:
        m = task.misconceived_solution(p)
        assert m == task.misconceived_solution(p)  # deterministic: learnable
        if m is None:
            continue
        changed += 1
        steps, boxed = _parse(m)
        assert boxed != p.answer and task.verify(p, m) == 0.0
        assert any(_value(a, op, b) != r for a, op, b, r in steps)  # some written equation is false
    assert changed / len(probs) > 0.5  # the greedy answer of a misconceived warm start is often wrong
    p = Problem("18+5-2=", 21, {"nums": (18, 5, 2), "ops": ("+", "-")})
    assert task.misconceived_solution(p) == "18+5=13;13-2=11;\\boxed{11}"
    p = Problem("2-5+1=", -2, {"nums": (2, 5, 1), "ops": ("-", "+")})
    assert task.misconceived_solution(p) == "2-5=3;3+1=4;\\boxed{4}"
    p = Problem("1+2=", 3, {"nums": (1, 2), "ops": ("+",)})
    assert task.misconceived_solution(p) is None  # no carry: the misconception gives the right answer


def test_verifier_right_wrong_malformed():
    task = make_task("stepwise")
    p = Problem("12+7-5+8+3=", 25, {"nums": (12, 7, 5, 8, 3), "ops": ("+", "-", "+", "+")})
    for right in ["12+7=19;19-5=14;14+8=22;22+3=25;\\boxed{25}", "\\boxed{25}", "\\boxed{ 25 }",
                  "\\boxed{3};22+3=25;\\boxed{25}"]:
        assert task.verify(p, right) == 1.0, right
    for bad in ["12+7=19;19-5=14;14+8=22;22+3=25;\\boxed{24}", "12+7=19;19-5=14;14+8=22;22+3=25;", "25",
                "\\boxed{25", "\\boxed{25}x\\boxed{}", "\\boxed{2 5}", "\\boxed{25.0}", "\\boxed{+25}",
                "\\boxed{9" + "9" * 30 + "}", "", "\\boxed{{25}}", None, 25]:
        assert task.verify(p, bad) == 0.0, bad
    neg = Problem("1-4=", -3, {"nums": (1, 4), "ops": ("-",)})
    assert task.verify(neg, "1-4=-3;\\boxed{-3}") == 1.0 and task.verify(neg, "\\boxed{3}") == 0.0


@given(st.text(alphabet=ALPHABET + "\n\\{}", max_size=80))
def test_verifier_never_raises(text):
    task = make_task("stepwise")
    p = Problem("1+2=", 3, {"nums": (1, 2), "ops": ("+",)})
    assert task.verify(p, text) in (0.0, 1.0)
    assert extract_boxed_int(text) is None or isinstance(extract_boxed_int(text), int)


def test_extract_boxed_int():
    assert extract_boxed_int("a\\boxed{7};\\boxed{-12}") == -12
    for bad in ["\\boxed{x}", "\\boxed{1", "no box", "\\boxed{}", None, "\\boxed{1/2}"]:
        assert extract_boxed_int(bad) is None, bad


def test_response_lengths_are_reasoning_length_and_in_vocabulary():
    task, probs = _problems(n=2000)
    rng = random.Random(3)
    lengths = []
    for p in probs:
        for r in (task.solution(p, rng), task.wrong_solution(p, rng), task.misconceived_solution(p) or ""):
            assert set(r + p.prompt) <= set(ALPHABET)
            assert len(r) <= task.max_response_chars
            if r:
                lengths.append(len(r) + 1)  # character tokens + <eos>
    assert 30 <= min(lengths) and max(lengths) <= 120
    assert 35 <= sum(lengths) / len(lengths) <= 60
    # prompt + response fit the default model's 128 positions (with <bos>)
    assert max(len(p.prompt) for p in probs) + 1 + task.max_response_chars + 1 <= 128


def test_max_response_chars_is_an_upper_bound_for_large_knobs():
    task, probs = _problems(make_task("stepwise", n_terms=6, max_operand=30, ops="+-*", **PLAIN), n=300)
    rng = random.Random(4)
    assert max(len(task.wrong_solution(p, rng)) for p in probs) <= task.max_response_chars


def test_splits_fixed_and_disjoint():
    task = make_task("stepwise")
    tr1, va1 = make_splits(task, 500, 100, seed=5)
    tr2, va2 = make_splits(task, 500, 100, seed=5)
    assert [p.prompt for p in tr1] == [p.prompt for p in tr2] and [p.prompt for p in va1] == [
        p.prompt for p in va2]
    assert not {p.prompt for p in tr1} & {p.prompt for p in va1}
    assert len({p.prompt for p in tr1}) == 500


@pytest.mark.parametrize("knobs, match", [
    ({"n_terms": 1}, "n_terms"), ({"n_terms": 11}, "n_terms"), ({"n_terms": 3.0}, "n_terms"),
    ({"n_terms": True}, "n_terms"), ({"max_operand": 0}, "max_operand"),
    ({"max_operand": 1000}, "max_operand"),
    ({"ops": ""}, "ops"), ({"ops": "+/"}, "ops"), ({"ops": "++"}, "ops"), ({"ops": 3}, "ops"),
    ({"steps": 3}, "valid knobs"), ({"variety": 1}, "variety"), ({"variety": "yes"}, "variety"),
    ({"style_signal": -0.1}, "style_signal"), ({"style_signal": 1.01}, "style_signal"),
    ({"style_signal": "0.5"}, "style_signal"), ({"style_signal": True}, "style_signal"),
    ({"style_signal": None}, "style_signal"), ({"style_signal": float("nan")}, "style_signal"),
])
def test_knob_validation(knobs, match):
    with pytest.raises(ValueError, match=match):
        make_task("stepwise", **knobs)


VARIETY = {"variety": True, "style_signal": 0.0}


@pytest.mark.parametrize("style_signal", [0.0, 0.6, 1.0])
def test_variety_keeps_the_steps_and_varies_only_the_surface(style_signal):
    task, probs = _problems(make_task("stepwise", variety=True, style_signal=style_signal))
    rng = random.Random(6)
    seen = set()
    for p in probs:
        nums = p.meta["nums"]
        for kind in ("solution", "wrong", "misconceived"):
            r = (task.solution(p, rng) if kind == "solution" else task.wrong_solution(p, rng)
                 if kind == "wrong" else task.misconceived_solution(p, rng))
            if r is None:
                continue
            steps, boxed, surfaces = _parse_variety(r, nums)
            assert len(steps) == task.n_terms - 1 and boxed == steps[-1][3]
            assert [s[0] for s in steps[1:]] == [s[3] for s in steps[:-1]]  # each step continues the last
            assert [s[2] for s in steps] == list(nums[1:]) and steps[0][0] == nums[0]
            false = [i for i, (a, op, b, res) in enumerate(steps) if _value(a, op, b) != res]
            if kind == "solution":
                assert not false and task.verify(p, r) == 1.0
            else:
                assert false and task.verify(p, r) == 0.0
                if kind == "wrong":
                    assert len(false) == 1
            seen.update((i, v) for s in surfaces for i, v in enumerate(s))
    # every surface choice occurs: prefixes, both operand orders, each optional space, separators
    assert {v for i, v in seen if i == 0} == set(PREFIXES)
    assert {v for i, v in seen if i == 6} == set(SEPARATORS)
    assert all({v for i, v in seen if i == k} == {"", " "} for k in (2, 3, 4, 5))
    assert {v for i, v in seen if i == 1} == {False, True}


def test_variety_forks_draw_the_same_surface():
    """Right, slipped and misconceived responses draw the surface identically from the same rng state,
    so the surface says nothing about correctness."""
    task = make_task("stepwise", **VARIETY)
    p = Problem("18+5-2+9+7=", 37, {"nums": (18, 5, 2, 9, 7), "ops": ("+", "-", "+", "+")})
    for seed in range(20):
        right = _parse_variety(task.solution(p, random.Random(seed)), p.meta["nums"])
        mis = _parse_variety(task.misconceived_solution(p, random.Random(seed)), p.meta["nums"])
        assert right[2] == mis[2] and right[1] == 37 != mis[1]
        rng = random.Random(seed)
        rng.choice((-10, -2, -1, 1, 2, 10)), rng.randrange(4)  # the slip draws come first
        wrong = _parse_variety(task.wrong_solution(p, random.Random(seed)), p.meta["nums"])
        assert wrong[2] == _parse_variety(task.solution(p, rng), p.meta["nums"])[2]


def test_variety_misconception_results_deterministic_surface_random():
    task, probs = _problems(make_task("stepwise", **VARIETY), n=200)
    surfaces, pairs = set(), 0
    for p in probs:
        first = task.misconceived_solution(p)
        if first is None:
            continue
        again = task.misconceived_solution(p)
        a, b = _parse_variety(first, p.meta["nums"]), _parse_variety(again, p.meta["nums"])
        assert a[:2] == b[:2]  # the misconception is learnable: same steps and answer every time
        surfaces.update((first, again))
        pairs += 1
        assert (task.misconceived_solution(p, random.Random(1))
                == task.misconceived_solution(p, random.Random(1)))
    assert pairs > 100 and len(surfaces) > 1.9 * pairs  # the surface is redrawn per call
    # without an rng the task's own seeded generator is used: a fresh task repeats the same sequence
    p = next(q for q in probs if task.misconceived_solution(q) is not None)
    fresh1, fresh2 = make_task("stepwise", **VARIETY), make_task("stepwise", **VARIETY)
    assert ([fresh1.misconceived_solution(p) for _ in range(5)]
            == [fresh2.misconceived_solution(p) for _ in range(5)])
    with pytest.raises(ValueError, match="rng"):
        task.misconceived_solution(p, rng=3)


def test_variety_off_is_the_plain_format():
    plain, varied = make_task("stepwise", **PLAIN), make_task("stepwise", **VARIETY)
    assert plain.variety is False and varied != plain
    p = Problem("12+7-5+8+3=", 25, {"nums": (12, 7, 5, 8, 3), "ops": ("+", "-", "+", "+")})
    assert plain.misconceived_solution(p, random.Random(0)) == plain.misconceived_solution(p)
    assert any(varied.solution(p, random.Random(s)) != plain.solution(p, random.Random(s)) for s in range(5))


def test_variety_lengths_reasoning_length_in_vocabulary_and_fit():
    task, probs = _problems(make_task("stepwise", **VARIETY), n=2000)
    rng = random.Random(7)
    lengths = []
    for p in probs:
        mis = task.misconceived_solution(p, rng) or ""
        for r in (task.solution(p, rng), task.wrong_solution(p, rng), mis):
            assert set(r + p.prompt) <= set(ALPHABET)
            assert len(r) <= task.max_response_chars
            if r:
                lengths.append(len(r) + 1)
    assert 30 <= min(lengths) and max(lengths) <= 120
    assert 45 <= sum(lengths) / len(lengths) <= 70
    assert max(len(p.prompt) for p in probs) + 1 + task.max_response_chars + 1 <= 128
    big, probs = _problems(make_task("stepwise", n_terms=6, max_operand=30, ops="+-*", **VARIETY), n=300)
    assert max(len(big.wrong_solution(p, rng)) for p in probs) <= big.max_response_chars


# ---- style_signal: the surface tells right from wrong ----

def _responses(task, probs, seed=0):
    """(correct?, surfaces) of a solution, a slipped and a misconceived response per problem."""
    rng, out = random.Random(seed), []
    for p in probs:
        for ok, r in ((True, task.solution(p, rng)), (False, task.wrong_solution(p, rng)),
                      (False, task.misconceived_solution(p, rng))):
            if r is not None:
                out.append((ok, _parse_variety(r, p.meta["nums"])[2], p.meta["ops"]))
    return out


def _tidy_fractions(task, probs):
    """Fraction of tidy choices (prefix, separator, space, natural order) in correct and wrong responses."""
    counts = {True: [0, 0], False: [0, 0]}
    for ok, surfaces, ops in _responses(task, probs):
        for (pre, swapped, *spaces, sep), op in zip(surfaces, ops):
            tidy = [pre in TIDY["prefix"][0], sep in TIDY["separator"][0]] + [sp == "" for sp in spaces]
            if op in "+*":
                tidy.append(not swapped)
            counts[ok][0] += sum(tidy)
            counts[ok][1] += len(tidy)
    return {ok: t / n for ok, (t, n) in counts.items()}


def _old_variety_write(nums, ops, results, rng):
    """The ``variety`` surface draw as it was before ``style_signal`` (reference for s = 0)."""
    lhs, parts = nums[0], []
    for o, n, r in zip(ops, nums[1:], results):
        pre = rng.choice(PREFIXES)
        a, b = (n, lhs) if o in "+*" and rng.random() < 0.5 else (lhs, n)
        s1, s2, s3, s4 = (" " if rng.random() < 0.5 else "" for _ in range(4))
        parts.append(f"{pre}{a}{s1}{o}{s2}{b}{s3}={s4}{r}{rng.choice(SEPARATORS)}")
        lhs = r
    return "".join(parts) + "\\boxed{" + str(results[-1]) + "}"


def test_style_signal_zero_is_the_uniform_variety_draw():
    """s = 0 reproduces the pre-knob draws exactly (same strings from the same rng state) for all kinds."""
    task, probs = _problems(make_task("stepwise", variety=True, style_signal=0.0), n=100)
    for i, p in enumerate(probs):
        nums, ops = p.meta["nums"], p.meta["ops"]
        right = task._results(nums, ops)
        assert task.solution(p, random.Random(i)) == _old_variety_write(nums, ops, right, random.Random(i))
        mis = task._results(nums, ops, misconceived=True)
        if mis[-1] != p.answer:
            assert (task.misconceived_solution(p, random.Random(i))
                    == _old_variety_write(nums, ops, mis, random.Random(i)))
    frac = _tidy_fractions(task, probs)
    assert abs(frac[True] - 0.5) < 0.03 and abs(frac[False] - 0.5) < 0.03


def test_style_signal_one_separates_the_halves():
    task, probs = _problems(make_task("stepwise", variety=True, style_signal=1.0), n=150)
    seen = {True: set(), False: set()}
    for ok, surfaces, ops in _responses(task, probs):
        for (pre, swapped, *spaces, sep), op in zip(surfaces, ops):
            half = 0 if ok else 1
            assert pre in TIDY["prefix"][half] and sep in TIDY["separator"][half]
            assert all(sp == ("" if ok else " ") for sp in spaces)
            if ok:
                assert not swapped
            seen[ok].update((pre, sep))
    assert seen[True] == set(TIDY["prefix"][0] + TIDY["separator"][0])  # uniform within the half
    assert seen[False] == set(TIDY["prefix"][1] + TIDY["separator"][1])
    assert _tidy_fractions(task, probs)[False] < 0.03  # (a swap is unobservable when operands are equal)


@pytest.mark.parametrize("s", [0.3, 0.6])
def test_style_signal_intermediate_fractions(s):
    """Correct responses are tidy with probability (1+s)/2, slipped/misconceived ones (1-s)/2."""
    task, probs = _problems(make_task("stepwise", variety=True, style_signal=s), n=200)
    frac = _tidy_fractions(task, probs)
    assert abs(frac[True] - (1 + s) / 2) < 0.03
    assert abs(frac[False] - (1 - s) / 2) < 0.04  # unobservable swaps count as tidy: slightly above


def test_style_signal_is_reproducible_and_ignored_without_variety():
    p = Problem("18+5-2+9+7=", 37, {"nums": (18, 5, 2, 9, 7), "ops": ("+", "-", "+", "+")})
    t1, t2 = (make_task("stepwise", variety=True, style_signal=0.6) for _ in range(2))
    assert [t1.misconceived_solution(p) for _ in range(5)] == [t2.misconceived_solution(p) for _ in range(5)]
    assert t1.wrong_solution(p, random.Random(3)) == t2.wrong_solution(p, random.Random(3))
    plain, signalled = make_task("stepwise", **PLAIN), make_task("stepwise", variety=False, style_signal=1.0)
    for seed in range(5):
        assert plain.solution(p, random.Random(seed)) == signalled.solution(p, random.Random(seed))
        rngs = random.Random(seed), random.Random(seed)
        assert plain.wrong_solution(p, rngs[0]) == signalled.wrong_solution(p, rngs[1])
        assert plain.misconceived_solution(p) == signalled.misconceived_solution(p)


def test_warm_start_cache_key_follows_the_tasks_default_knobs(monkeypatch):
    """A changed task default (not a user knob) must change the warm-start cache key: no stale reuse."""
    import dataclasses

    from llm_rl import tasks as tasks_pkg
    from llm_rl.config import PretrainConfig

    before = PretrainConfig(task="stepwise").digest()
    assert PretrainConfig(task="stepwise").digest() == before
    changed = dataclasses.make_dataclass("Stepwise2", [("style_signal", float, 0.3)],
                                         bases=(tasks_pkg.TASKS["stepwise"],), frozen=True)
    monkeypatch.setitem(tasks_pkg.TASKS, "stepwise", changed)
    assert PretrainConfig(task="stepwise").digest() != before
