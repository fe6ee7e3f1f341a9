"""Symbolic derivations (sympy) of the core identities, and `entropy-mech verify`."""

import pytest
import sympy as sp

from cli.main import main
from theory import symbolic
from theory.verify import CHECKS, run_checks


@pytest.mark.parametrize("name", sorted(symbolic.IDENTITIES))
@pytest.mark.parametrize("n", [2, 3])
def test_identity_simplifies_to_zero(name, n):
    assert symbolic.check_identity(name, n).holds


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(symbolic.IDENTITIES))
def test_identity_simplifies_to_zero_n4(name):
    assert symbolic.check_identity(name, 4).holds


def test_a_wrong_identity_does_not_simplify_to_zero():
    # negative control: Lemma 1 with the sign flipped, and the uncentred PG step, must both fail
    s = symbolic._Softmax(2)
    lhs = sum(sp.diff(s.H, s.z[j]) * s.d[j] for j in range(2))
    assert sp.simplify(s.reduce(lhs - s.cov(s.logpi, s.d))) != 0
    grad = sp.diff(s.expect(s.r), s.z[0])
    assert sp.simplify(s.reduce(grad - s.pi[0] * s.r[0])) != 0


def test_unknown_identity_and_bad_n_raise():
    with pytest.raises(ValueError, match="unknown identity"):
        symbolic.check_identity("lemma9", 2)
    with pytest.raises(ValueError, match="n must be"):
        symbolic.check_identity("lemma1", 1)


def test_numeric_verification_all_pass():
    rows = run_checks(instances=20, seed=1)
    assert len(rows) == len(CHECKS)
    assert all(r.passed for r in rows), [r.statement for r in rows if not r.passed]


def test_verify_cli_prints_table_and_exits_zero(capsys):
    assert main(["verify", "--instances", "5"]) == 0
    out = capsys.readouterr().out
    assert "Lemma 1" in out and "Theorem 2" in out and "FAIL" not in out
    assert "22/22 numeric statements PASS" in out


def test_verify_cli_exits_nonzero_on_failure(monkeypatch, capsys):
    import theory.verify as v

    monkeypatch.setattr(v, "CHECKS", v.CHECKS + [("broken", "none", lambda g, k: (1.0, 0.5, "x"))])
    assert main(["verify", "--instances", "2"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
