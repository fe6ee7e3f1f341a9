"""What :func:`figures.draw.draw_all` returns: one typed result per drawn figure.

Some figures are drawn more than once, from different runs or with a different accuracy as R; a
:class:`Variant` names each drawing (``collapse`` of the LLM runs, of the simulator runs, with T=1
accuracy…). Its figure file is ``<figure><suffix>.png`` (e.g. ``collapse_sim.png``), except the LLM
drawings redrawn with sampled accuracy (``collapse_sampled.png``, see :func:`figures.draw.choose_llm_score`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .fig_collapse import CollapseResult
from .fig_covariance import CovarianceResult
from .fig_dynamics import DynamicsResult
from .fig_law import LawResult
from .fig_methods import MethodsResult
from .fig_prediction import PredictionResult
from .fig_sweeps import SweepResult
from .fig_theory import TheoryResult


class Variant(Enum):
    """Which runs one drawing of a figure uses, and which accuracy is its R."""

    LLM = ""
    """LLM runs; R = :attr:`FigureResults.llm_score` (greedy unless greedy is saturated)"""
    SIM = "sim"
    """tabular-LM simulator runs; R = the exact expected reward"""
    T1 = "t1"
    """LLM runs; R = accuracy of T=1 samples (``val/acc_t1``)"""
    GREEDY = "greedy"
    """LLM runs; R = greedy accuracy, kept beside the LLM drawing when that uses sampled accuracy"""

    @property
    def suffix(self) -> str:
        """``""``, ``"_sim"``, ``"_t1"`` or ``"_greedy"``: how the report and file names mark it."""
        return f"_{self.value}" if self.value else ""


class Score(Enum):
    """The accuracy the LLM claims, law, early-prediction and method tables use (the metrics key)."""

    GREEDY = "val/acc"
    """greedy validation accuracy, the paper's R"""
    SAMPLED = "val/acc_sampled"
    """T=0.6 sampled validation accuracy (4 samples per prompt)"""


@dataclass(frozen=True)
class FigureResults:
    """Every drawn figure's data (a figure or variant absent from its field was not drawn)."""

    collapse: dict[Variant, CollapseResult] = field(default_factory=dict)
    law: dict[Variant, LawResult] = field(default_factory=dict)
    prediction: dict[Variant, PredictionResult] = field(default_factory=dict)
    covariance: CovarianceResult | None = None
    dynamics: DynamicsResult | None = None
    methods: dict[Variant, MethodsResult] = field(default_factory=dict)
    sweeps: dict[tuple[str, Variant], SweepResult] = field(default_factory=dict)
    """(sweep name of :data:`~figures.fig_sweeps.SWEEPS`, ``Variant.LLM`` or ``Variant.SIM``) -> result"""
    theory: TheoryResult | None = None
    skipped: tuple[str, ...] = ()
    """names of the figures not drawn for lack of runs, in drawing order"""
    llm_score: Score = Score.GREEDY
    """the accuracy behind the ``Variant.LLM`` collapse, law, prediction and methods results"""
    greedy_start: float = float("nan")
    """mean greedy accuracy at the start of the LLM GRPO runs (set when :attr:`llm_score` is sampled)"""

    def sweep(self, sweep: str, variant: Variant = Variant.LLM) -> SweepResult | None:
        """The result of ``sweep`` over LLM (or simulator) runs, None when not drawn."""
        return self.sweeps.get((sweep, variant))

    def figure_files(self) -> dict[str, tuple[Path, ...]]:
        """Figure name (``collapse``, ``collapse_sim``, ``sweep_kl_cov``…) -> the files written, for
        every result that has files, in drawing order."""
        out: dict[str, tuple[Path, ...]] = {}
        for name in ("collapse", "law", "prediction"):
            out.update((name + v.suffix, r.files) for v, r in getattr(self, name).items())
        single = (("covariance", self.covariance), ("dynamics", self.dynamics))
        out.update((name, r.files) for name, r in single if r is not None)
        out.update(("methods" + v.suffix, r.files) for v, r in self.methods.items())
        out.update((f"sweep_{sweep}{v.suffix}", r.files) for (sweep, v), r in self.sweeps.items())
        if self.theory is not None:
            out["theory"] = self.theory.files
        return {k: v for k, v in out.items() if v}
