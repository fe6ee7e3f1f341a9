"""``entropy-mech fit``: fit R = −a·exp(H) + b (Cui et al. 2025, Eq. 6) to one or more training logs.

    entropy-mech fit runs/a/metrics.jsonl export.csv runs/b/tb --early 0.15 --plot fit.png
    entropy-mech fit runs/a --entropy-key actor/entropy --score-key val/score-all --json
    entropy-mech fit verl_logs/my_project/my_exp.jsonl trl_out/checkpoint-500

Formats (auto-detected; ``--format`` to force): this package's JSONL, CSV exports, TensorBoard, verl's file
logger (``{"step", "data"}`` lines) and transformers / TRL ``trainer_state.json`` (file, checkpoint directory
or output directory). Default keys depend on the format (rundir.logs.DEFAULT_KEYS); verl's and TRL's score
key is picked by pattern among the logged keys and named in a note.

Per log it prints a table: a, b and the ceiling b − a with bootstrap CIs, R², RMSE, the RMSE of
predicting the run from its first ``--early`` fraction of points and of the reverse test, and the
functional form preferred by AIC. ``--json`` prints the same as JSON on stdout (notes go to stderr).
Exit status: 0 if every log was fitted, 1 if any failed (each failure is reported).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from rundir.logs import DEFAULT_KEYS, FORMATS, RunSeries, read_run_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", metavar="LOG",
                        help="JSONL metrics, CSV export, TensorBoard event file, verl file-logger JSONL, "
                             "TRL trainer_state.json (or its checkpoint folder), or a run folder")
    parser.add_argument("--entropy-key", default=None,
                        help="key / column / tag of the entropy in nats (default per format: "
                             + ", ".join(f"{f} {k[0]}" for f, k in DEFAULT_KEYS.items() if f != "csv") + ")")
    parser.add_argument("--score-key", default=None,
                        help="key / column / tag of the validation score (default per format: jsonl/csv/"
                             f"tensorboard {DEFAULT_KEYS['jsonl'][1]}; verl the one val-core/<source>/acc/"
                             "mean@<n>; trainer_state eval_accuracy, else eval_reward)")
    parser.add_argument("--step-key", default=None,
                        help="step key/column (default: 'step'; CSV falls back to '_step')")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="log format")
    parser.add_argument("--early", type=float, default=0.15,
                        help="fraction of points (in step order) fitted in the early-prediction test "
                             "(default 0.15)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for the CIs")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--plot", metavar="OUT", default=None, help="draw R vs H with the fits to this image")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")


# ----------------------------------------------------------------------------- analysis

def _finite(x):
    """JSON-safe: NaN/inf -> None, recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def analyse(series: RunSeries, *, early: float, n_boot: int, ci: float, seed: int) -> tuple[dict, list[str]]:
    """Fit, early/reverse prediction and form comparison of one aligned series; returns (result, notes)."""
    from theory.law import fit_entropy_law  # numpy/scipy: imported on use (fast --help)
    from theory.law_extrapolation import compare_forms, predict_from_early

    notes = [n for n in [series.alignment_note()] if n]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_entropy_law(series.H, series.R, n_boot=n_boot, seed=seed, ci=ci)
        forms = compare_forms(series.H, series.R)
        try:
            pred = predict_from_early(series.H, series.R, early, steps=series.step)
            pred_d, pred_err = asdict(pred), None
        except ValueError as err:
            pred_d, pred_err = None, str(err)
    notes += sorted({f"{series.path}: {w.message}" for w in caught})
    if pred_err:
        notes.append(f"{series.path}: early-prediction test skipped: {pred_err}")
    elif pred_d["reverse"] is None:
        notes.append(f"{series.path}: reverse test skipped: {pred_d['reverse_skipped']}")
    result = {
        "path": series.path, "format": series.format,
        "entropy_key": series.entropy_key, "score_key": series.score_key,
        "alignment": {"aligned": series.aligned, "n_shifted": series.n_shifted,
                      "n_unmatched": series.n_unmatched},
        "fit": asdict(fit),
        "early_prediction": pred_d, "early_prediction_error": pred_err,
        "forms": [asdict(f) for f in forms], "best_form": forms[0].name,
        "notes": notes,
    }
    return _finite(result), notes


# ----------------------------------------------------------------------------- output

def _num(x, fmt=".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _ci(c) -> str:
    return "" if c is None else f"[{_num(c[0])}, {_num(c[1])}]"


def format_table(res: dict) -> str:
    """Human-readable block for one analysed log."""
    fit, pred = res["fit"], res["early_prediction"]
    level = f"{round(100 * fit['ci_level'])}% CI"
    lines = [f"== {res['path']}  ({res['format']}, {fit['n_points']} points; H = '{res['entropy_key']}', "
             f"R = '{res['score_key']}')",
             f"  {'R = -a*exp(H) + b':<34}{'estimate':>12}   {level if fit['n_boot'] else ''}"]
    for name, key in (("a", "a"), ("b", "b"), ("ceiling b - a  (R at H = 0)", "ceiling")):
        lines.append(f"  {name:<34}{_num(fit[key]):>12}   {_ci(fit.get(key + '_ci'))}")
    lines.append(f"  {'R^2':<34}{_num(fit['r2']):>12}")
    lines.append(f"  {'RMSE':<34}{_num(fit['rmse']):>12}")
    if pred is None:
        lines.append(f"  {'early-prediction RMSE':<34}{'n/a':>12}")
    else:
        for label, part, where in (("early", pred["forward"], "final"),
                                   ("reverse", pred["reverse"], "first")):
            if part is None:
                lines.append(f"  {label + ' RMSE':<34}{'n/a':>12}")
                continue
            side = "first" if label == "early" else "last"
            name = f"{label} RMSE (fit {side} {part['n_fit']} pts)"
            lines.append(f"  {name:<34}{_num(part['rmse']):>12}"
                         f"   on {part['n_pred']} predicted pts; error at {where} point "
                         f"{_num(part['endpoint_error'])}")
    ranking = ", ".join(f"{f['name']} {_num(f['aic'], '.1f')}" for f in res["forms"])
    lines.append(f"  {'best form by AIC':<34}{res['best_form']:>12}   (AIC: {ranking})")
    return "\n".join(lines)


_LOG_FOLDERS = {"tb", "tensorboard", "logs", "log", "events", "metrics"}
"""folder names that name a log format, not a run: the run is the folder above them"""


def run_label(path: str | Path) -> str:
    """The run a log belongs to, for legends: the folder holding the log file (``runs/a/metrics.jsonl``
    -> ``a``; a TensorBoard folder ``runs/b/tensorboard`` or its event file -> ``b``); a log file in no
    named folder -> its stem. ValueError for an empty path."""
    p = Path(path)
    if not str(path):
        raise ValueError("empty log path")
    folder = p.is_dir() or (not p.exists() and p.suffix == "" and "tfevents" not in p.name)
    for q in ((p,) if folder else ()) + tuple(p.parents):
        if q.name and q.name not in _LOG_FOLDERS:
            return q.name
    return p.stem or p.name


def plot_fits(results: list[tuple[RunSeries, dict]], out: str) -> Path:
    """R vs H scatter with the fitted law (extended to H = 0 to show the ceiling); written atomically."""
    from theory.law import law_predict
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rundir.files import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for i, (series, res) in enumerate(results):
        color = f"C{i % 10}"
        fit = res["fit"]
        ax.scatter(series.H, series.R, s=12, color=color, alpha=0.7, label=run_label(series.path))
        hh = np.linspace(0.0, float(np.nanmax(series.H)) * 1.05, 200)
        ax.plot(hh, law_predict(hh, fit["a"], fit["b"]), color=color,
                label=f"a={fit['a']:.3g}, b={fit['b']:.3g}, ceiling={fit['ceiling']:.3g}")
    ax.set_xlabel("entropy H (nats)")
    ax.set_ylabel("score R")
    ax.set_title(r"$R = -a\,e^{H} + b$")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    suffix = Path(out).suffix.lstrip(".").lower() or "png"
    fig.savefig(buf, format=suffix, dpi=150)
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())


#: file formats ``--plot`` writes (chosen by the file's suffix)
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def check_plot_path(out: str) -> None:
    """ValueError unless ``out`` can be written as a plot: a known suffix, not a folder, under a folder."""
    p = Path(out)
    if p.is_dir():
        raise ValueError(f"--plot {out} is a folder; give a file name such as {p / 'fit.png'}")
    suffix = p.suffix.lstrip(".").lower()
    if suffix and suffix not in PLOT_FORMATS:
        raise ValueError(f"--plot {out}: unknown image format '.{suffix}'; use one of "
                         f"{', '.join('.' + f for f in PLOT_FORMATS)}")
    for parent in p.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--plot {out}: {parent} is a file, not a folder")
            break


def run(args: argparse.Namespace) -> int:
    """Entry point of ``entropy-mech fit``: exit 0, or 2 on a bad option or an unreadable log."""
    note_stream = sys.stderr if args.json else sys.stdout
    for bad, msg in ((not 0 < args.early < 1, f"--early must be in (0, 1), got {args.early}"),
                     (args.n_boot < 0, f"--n-boot must be >= 0, got {args.n_boot}"),
                     (not 0 < args.ci < 1, f"--ci must be in (0, 1), got {args.ci}")):
        if bad:
            print(f"entropy-mech fit: error: {msg}", file=sys.stderr)
            return 2
    if args.plot:
        try:
            check_plot_path(args.plot)
        except ValueError as err:
            print(f"entropy-mech fit: error: {err}", file=sys.stderr)
            return 2
    ok: list[tuple[RunSeries, dict]] = []
    failed = 0
    for log in args.logs:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                series = read_run_log(log, entropy_key=args.entropy_key, score_key=args.score_key,
                                      step_key=args.step_key, fmt=args.format)
            res, _ = analyse(series, early=args.early, n_boot=args.n_boot, ci=args.ci, seed=args.seed)
            chosen = (("entropy", series.entropy_key, "entropy-key", args.entropy_key),
                      ("score", series.score_key, "score-key", args.score_key))
            picked = [f"{series.path}: {what} key '{key}' is the {series.format} default (--{opt} to change)"
                      for what, key, opt, given in chosen
                      if given is None and series.format in ("verl", "trainer_state")]
            res["notes"] = picked + [str(w.message) for w in caught] + res["notes"]
        except (ValueError, ImportError, OSError) as err:
            msg = str(err) if str(log) in str(err) else f"{log}: {err}"
            print(f"entropy-mech fit: error: {msg}", file=sys.stderr)
            failed += 1
            continue
        ok.append((series, res))
        if not args.json:
            print(format_table(res))
        for note in res["notes"]:
            print(f"  note: {note}", file=note_stream)
        if not args.json:
            print()
    if args.json:
        print(json.dumps([res for _, res in ok], indent=2))
    if args.plot and ok:
        path = plot_fits(ok, args.plot)
        print(f"wrote {path}", file=note_stream)
    return 2 if failed else 0
