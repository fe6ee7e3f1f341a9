"""``entropy-mech <command> --help`` imports neither torch nor transformers (so it answers in well under a
second; benchmarks/help_time.py measures it) and shows every option's default; the lazy exports of
``theory`` and ``simulators`` behave like the eager ones did."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.common import HelpFormatter
from cli.main import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers")

# Runs `code` in a fresh interpreter and prints the heavy modules it left in sys.modules (as JSON).
_PROBE = """
import contextlib, io, json, sys
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
{code}
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_modules_after(code: str) -> list[str]:
    """The modules of :data:`HEAVY` imported by running ``code`` (statements) in a fresh interpreter."""
    body = "\n".join("        " + line for line in code.strip().splitlines())
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=body, heavy=HEAVY)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_imports_neither_torch_nor_transformers(command):
    code = f"from cli.main import main\nmain([{command!r}, '--help'])"
    assert heavy_modules_after(code) == [], f"`entropy-mech {command} --help` imports a heavy module"


def test_the_probe_sees_a_heavy_import():
    """The check above can fail: importing a torch-backed module is detected."""
    assert heavy_modules_after("import theory.softmax") == ["torch"]
    assert heavy_modules_after("import theory\ntheory.entropy") == ["torch"]


@pytest.mark.parametrize("module", ["theory", "theory.names", "simulators", "simulators.config", "llm_rl",
                                    "llm_rl.config", "llm_rl.objective_choice", "llm_rl.tasks", "cli.train",
                                    "cli.simulate", "cli.pretrain", "cli.eval"])
def test_config_modules_are_torch_free(module):
    assert heavy_modules_after(f"import {module}") == []


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(SUBCOMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"entropy-mech {command}", formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return parser


def options_without_default(parser: argparse.ArgumentParser) -> list[str]:
    """Options with a value to default to whose help does not say what it is. Config options (default
    SUPPRESS) say it in their help, or that they are required; flags (default False) and "not given"
    options (default None) are exempt."""
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        if (not action.option_strings or action.help == argparse.SUPPRESS or action.required
                or isinstance(action, argparse._HelpAction) or action.default in (None, False)):
            continue
        text = formatter._get_help_string(action) or ""
        if "default" not in text and "required" not in text:
            missing.append(action.option_strings[0])
    return missing


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_option_shows_its_default(command):
    assert options_without_default(_parser(command)) == []


def test_a_hidden_default_is_found():
    parser = argparse.ArgumentParser(formatter_class=argparse.HelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="steps")
    parser.add_argument("--flag", action="store_true", help="a flag")
    assert options_without_default(parser) == ["--steps"]
    parser.formatter_class = HelpFormatter
    assert options_without_default(parser) == []


def test_theory_lazy_exports_match_the_submodules():
    import theory
    import theory.advantages
    import theory.aggregation
    import theory.names
    import theory.objectives
    import theory.regularizers

    assert set(theory.__all__) <= set(dir(theory))
    for name in theory.__all__:
        assert getattr(theory, name) is getattr(importlib.import_module(f"theory.{theory._SOURCES[name]}"),
                                                name)
    from theory import ObjectiveName, entropy, get_objective  # noqa: F401  (from-imports keep working)

    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        theory.not_a_name  # noqa: B018
    # one home for the vocabularies: the torch-backed modules re-use theory.names' objects
    assert theory.advantages.ADVANTAGE_ESTIMATORS is theory.names.ADVANTAGE_ESTIMATORS
    assert theory.aggregation.AggMode is theory.names.AggMode
    assert theory.aggregation.AGG_MODES is theory.names.AGG_MODES
    assert theory.objectives.ObjectiveName is theory.names.ObjectiveName
    assert theory.objectives.KNOWN_OBJECTIVES is theory.names.KNOWN_OBJECTIVES
    assert set(theory.names.KNOWN_OBJECTIVES) <= set(theory.objectives.OBJECTIVES)
    assert theory.regularizers.KL_ESTIMATORS is theory.names.KL_ESTIMATORS


def test_simulators_lazy_exports():
    import simulators

    assert set(simulators.__all__) == set(simulators._SOURCES)
    assert simulators.SimConfig is importlib.import_module("simulators.config").SimConfig
    with pytest.raises(AttributeError):
        simulators.not_a_name  # noqa: B018


def test_configs_still_validate_with_lazy_imports():
    from llm_rl.config import AGG_MODES, REF_KL_ESTIMATORS, ObjectiveConfig, PretrainConfig, TrainConfig
    from llm_rl.objective_choice import SELECTION_OBJECTIVES
    from llm_rl.pretrain import PretrainConfig as FromPretrain
    from simulators.config import SimConfig
    from theory.names import AGG_MODES as NAMES_AGG, KL_ESTIMATORS

    assert FromPretrain is PretrainConfig and AGG_MODES is NAMES_AGG and REF_KL_ESTIMATORS is KL_ESTIMATORS
    assert set(SELECTION_OBJECTIVES) == {"clip_cov", "kl_cov"}
    TrainConfig()
    with pytest.raises(ValueError, match="clip_ratio"):
        ObjectiveConfig(name="clip_cov", params={"clip_ratio": 2.0})
    with pytest.raises(ValueError, match="unknown objective"):
        ObjectiveConfig(name="nope")
    with pytest.raises(ValueError, match="agg_mode"):
        ObjectiveConfig(agg_mode="sum")
    with pytest.raises(ValueError, match="entropy_coef"):  # check_scalar, imported on first use
        ObjectiveConfig(entropy_coef=float("nan"))
    with pytest.raises(ValueError, match="model size|hidden_size|model_sizes"):
        PretrainConfig(model_sizes={"hidden_size": -3})
    with pytest.raises(ValueError):
        SimConfig(rule="grpo", objective="clip_cov", objective_kwargs={"clip_ratio": 2.0})
