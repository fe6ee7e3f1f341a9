"""Shared look of every figure: headless Agg backend, one palette, atomic PNG (+ PDF) writes.

Every ``fig_*`` module draws through :func:`new_figure` and saves through :func:`save_figure`, so the
figures of ``entropy-mech figures`` / ``reproduce`` look alike and a killed run never leaves half a file.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402

from rundir.files import atomic_write_bytes  # noqa: E402

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
"""colours in the order series are drawn (matplotlib's tab10, fixed so every figure agrees)"""

METHOD_COLORS = {"grpo": PALETTE[0], "clip_higher": PALETTE[3], "clip_cov": PALETTE[2], "kl_cov": PALETTE[1]}
"""the four methods of paper Fig. 11 keep one colour across figures"""

SAVE_DPI = 160
"""resolution of every saved PNG (>= 150 so that legends stay readable when the figure is shown shrunk)"""
RC = {"figure.dpi": 110, "savefig.dpi": SAVE_DPI, "savefig.bbox": "tight", "savefig.pad_inches": 0.05,
      "font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "axes.grid": True, "grid.alpha": 0.3,
      "legend.fontsize": 9, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False}
"""the shared rc style; legends use ``legend.fontsize`` (9 pt) unless a crowded panel asks for
:data:`SMALL_LEGEND`"""
SMALL_LEGEND = 8
"""font size (pt) of a legend with many entries (never smaller: 8 pt at 160 dpi stays readable)"""


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2):
    """``(fig, axes)`` with the shared rc style; ``axes`` is always a flat list."""
    if ncols < 1 or nrows < 1:
        raise ValueError(f"ncols and nrows must be >= 1, got {ncols}, {nrows}")
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
        for ax in axes.flat:
            ax.grid(True, alpha=0.3)
    return fig, list(axes.flat)


def save_figure(fig, out_stem: str | Path, pdf: bool = False) -> list[Path]:
    """Write ``<out_stem>.png`` (and ``.pdf`` when ``pdf``) atomically, close ``fig``, return the paths."""
    out_stem = Path(out_stem)
    paths = []
    with plt.rc_context(RC):
        fig.tight_layout()
        for ext in ("png", "pdf") if pdf else ("png",):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=SAVE_DPI, bbox_inches="tight")
            paths.append(atomic_write_bytes(out_stem.with_suffix(f".{ext}"), buf.getvalue()))
    plt.close(fig)
    return paths
