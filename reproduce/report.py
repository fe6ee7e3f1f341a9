"""``report.md``: the paper's claims against our runs, the tables, and how to rerun every experiment.

Sections: a summary (verdict counts and the key findings picked by
:data:`reproduce.claim_rules.SUMMARY_RULE`); a glossary of run labels; claims table
(:mod:`reproduce.claims`, with the likely reason of a claim that does not hold when the data shows one);
theorem verification (``theory.verify.run_checks``);
law coefficients with bootstrap CIs, form comparison and early-prediction errors (paper Eq. 6, §2.4,
Fig. 7); method comparison with mean ± 95% CI over seeds (Table 2 analogue); covariance by
top-percentile group (Table 1 analogue, groups under ``MIN_GROUP_STATES`` token states marked "too few
states"); sweep summaries (Figs. 9, 10, 12); figure list; the exact commands of every run, pasteable into a
shell (warm-start model directories as shell variables set to the path each warm start reported); failed
runs.

The writer only formats: it takes the typed figure results (:class:`figures.results.FigureResults`,
drawn and scored by :mod:`reproduce.pipeline`), the theorem checks and the Table 1 analogue. LLM
accuracy: the paper's R is greedy validation accuracy (``val/acc``); when the GRPO runs start with greedy
accuracy >= 90% (our default warm start: ~98%), :func:`figures.draw.choose_llm_score` has switched the
LLM results to T=0.6 sampled accuracy (``val/acc_sampled``) and kept the greedy ones beside them; the
report says which one it used.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from figures.draw import GREEDY_SATURATED
from figures.fig_covariance import MIN_GROUP_STATES, Table1Result, top_group_size
from figures.results import FigureResults, Score, Variant
from llm_rl.metrics import TOP_PERCENTS
from rundir.files import atomic_write_text
from rundir.finished import is_finished, read_done

from .claim_rules import FAILS, HOLDS, NA, PARTLY, SUMMARY_RULE, ClaimRow, num, pct, summarize
from .claims import claim_rows
from .reasons import PAPER_FRACTIONS, fraction_text


def _table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


SCORE_NAMES = {Score.GREEDY: "greedy accuracy", Score.SAMPLED: "T=0.6 sample accuracy"}
"""how the law, prediction and method tables name the LLM accuracy"""


def claims_table(rows: list[ClaimRow]) -> str:
    """The claims table in markdown, one line per claim row of :func:`reproduce.claims.claim_rows`
    (numerical checks, :attr:`~reproduce.claim_rules.ClaimRow.check`, go to :func:`checks_table`)."""
    return _table(["claim", "paper ref.", "paper", "ours", "verdict", "likely reason", "rule"],
                  [[r.claim, r.ref, r.paper, r.ours, r.verdict, r.reason, r.note]
                   for r in rows if not r.check])


def checks_table(rows: list[ClaimRow]) -> str:
    """The numerical checks (identities, Taylor expansions) of ``rows``: not evidence for the paper."""
    checks = [[r.claim, r.ref, r.ours, r.verdict, r.note] for r in rows if r.check]
    return (_table(["check", "ref.", "ours", "result", "rule"], checks) if checks else "None.")


def summary_section(rows: list[ClaimRow]) -> str:
    """Verdict counts over ``rows`` and the key findings of :func:`reproduce.claim_rules.summarize`."""
    s = summarize(rows)
    c = s.counts
    n = sum(not r.check for r in rows)
    out = [f"Of {n} claims: **{c[HOLDS]} hold**, **{c[PARTLY]} partly**, **{c[FAILS]} do not hold**, "
           f"**{c[NA]} not measured** (table below; \"does not hold\" means our small runs do not show the "
           "effect, not that the paper is wrong).", "",
           f"Key findings (rule: {SUMMARY_RULE}):", ""]
    for i, r in enumerate(s.findings, 1):
        why = f" Likely reason: {r.reason}." if r.reason else ""
        out.append(f"{i}. **{r.plain}**: {r.verdict} ({r.claim}). Ours: {r.ours}; paper: {r.paper}.{why}")
    if not s.findings:
        out.append("None of the key findings was measured.")
    return "\n".join(out)


GLOSSARY = (
    ("`m32`, `m64`, `m96`, `m128`, `m192`", "LLM size: a tiny Qwen2-style model with that hidden size "
     "(`m96` is the default model); sizes used here are listed below"),
    ("`s0`, `s1`, ...", "the run's random seed"),
    ("`grpo`, `clip_higher`, `clip_cov`, `kl_cov`", "the objective: GRPO (PPO-clip, group-normalised "
     "advantages), clip-higher (eps_high 0.28), Clip-Cov and KL-Cov (paper §4)"),
    ("`name=value` in a label", "objective parameters: `clip_ratio` (Clip-Cov's token fraction r), "
     "`kl_ratio` (KL-Cov's k), `kl_coef` (KL-Cov's beta), `allow_large_ratio=True` (permits fractions "
     "above 0.05); `ent=` / `refkl=`: entropy-bonus / reference-KL coefficient"),
    ("`sim-tabular_lm`, `sim-lm-...`", "the tabular-LM simulator (`entropy-mech simulate --world "
     "tabular_lm`): one softmax per prefix, no network, exact expected reward"),
    ("`sim-bandit-pg-lr0.1`", "exact policy gradient on a bandit at step size 0.1 (first-order error test)"),
    ("`pretrain-m96`", "the supervised warm start of size `m96` that the LLM runs start from"),
    ("`llm-kl_cov-m96-s1`", "an RL run: objective, size, seed"),
    ("`...-7097c8849419` (folder names)", "hash of the run's command: a changed setting gets a new folder"),
    ("`_sim`, `_t1`, `_sampled`, `_greedy` (figure names)", "drawn from the simulator, with T=1 sample "
     "accuracy as R, with T=0.6 sampled accuracy, with greedy accuracy"),
    ("greedy / T=0.6 / T=1 accuracy", "validation accuracy of the greedy answer (the paper's R) / of "
     "samples at temperature 0.6 (4 per prompt) / at temperature 1"),
)
"""run-label glossary of the report: (label or pattern, meaning)"""


def _specs(run_results) -> list[tuple[dict, dict]]:
    """``(run result, its spec.json or {})`` for each run result."""
    out = []
    for r in run_results or []:
        f = Path(r["dir"]) / "spec.json"
        out.append((r, json.loads(f.read_text()) if f.is_file() else {}))
    return out


def glossary_section(run_results=None) -> str:
    """The glossary table, then the model sizes the runs used (from the warm starts' specs)."""
    from .plans import SIZES

    sizes = []
    for _, spec in _specs(run_results):
        name = spec.get("tags", {}).get("size_name")
        if spec.get("kind") == "pretrain" and name:
            over = SIZES.get(name)
            what = ("the default model (`llm_rl.model.default_model_config`)" if over == {} else
                    ", ".join(f"{k} {v}" for k, v in over.items()) if over else "custom size")
            sizes.append(f"`{name}`: {what}")
    return (_table(["label", "meaning"], [list(g) for g in GLOSSARY])
            + ("\n\nSizes in these runs: " + "; ".join(sizes) + "." if sizes else ""))


def _ci(ci) -> str:
    return f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "n/a"


def _law_section(results: FigureResults) -> str:
    out = []
    llm = SCORE_NAMES[results.llm_score]
    for v, where in ((Variant.LLM, "LLM, R = " + llm), (Variant.GREEDY, "LLM, R = greedy accuracy"),
                     (Variant.T1, "LLM, R = T=1 sample accuracy"),
                     (Variant.SIM, "tabular-LM simulator, R = exact expected reward")):
        d = results.law.get(v)
        if not d:
            continue
        rows = []
        for name, g in sorted(d.groups.items()):
            f = g.fit
            if f is None:
                rows.append([name, str(g.n_runs), "-", "-", "-", "-", "-", g.error])
                continue
            forms = ", ".join(f"{form.name} {form.aic:.1f}" for form in g.forms)
            rows.append([name, str(g.n_runs), f"{f.a:.3g} {_ci(f.a_ci)}", f"{f.b:.3g} {_ci(f.b_ci)}",
                         f"{f.ceiling:.3g}", f"{f.r2:.2f}", f"{100 * f.rmse:.2f}%", forms])
        out.append(f"**{where}** (R = -a exp(H) + b, 95% bootstrap CIs; AIC per form, lower is better)\n\n"
                   + _table(["group", "runs", "a [CI]", "b [CI]", "ceiling b-a", "R²", "RMSE", "AIC"], rows))
        if d.scaling:
            sc = d.scaling
            out.append("Log-linear size fit c = α ln(N / 1M) + β: " + "; ".join(
                f"{k}: α={sc.slope[k]:.3g}, β={sc.intercept[k]:.3g}, R²={sc.r2[k]:.2f}" for k in sc.slope))
    for v, where in ((Variant.LLM, "LLM, R = " + llm), (Variant.GREEDY, "LLM, R = greedy accuracy"),
                     (Variant.SIM, "tabular-LM simulator")):
        d = results.prediction.get(v)
        if not d:
            continue
        rows = [[r.label, "-" if r.k is None else str(r.k), str(len(r.R)), pct(r.rmse, 2),
                 pct(r.final_error, 2), pct(r.reverse_rmse, 2), r.error] for r in d.runs]
        out.append(f"**Early prediction, {where}** (fit on the first {100 * d.fraction:.0f}% of validation "
                   "points; paper: RMSE 0.9% / 1.2%, final 0.5% / 1.9%)\n\n"
                   + _table(["run", "fit pts", "pts", "RMSE", "final err", "reverse RMSE", "note"], rows))
    return "\n\n".join(out) or "No law runs."


def _mean_ci(ci, scale: float = 1.0) -> str:
    if ci.n == 0:
        return "n/a"
    return f"{scale * ci.mean:.3g} ± {scale * ci.half:.2g}" if ci.n > 1 else f"{scale * ci.mean:.3g}"


def _methods_section(results: FigureResults) -> str:
    out = []
    for v, where in ((Variant.LLM, "LLM, accuracy = " + SCORE_NAMES[results.llm_score]),
                     (Variant.GREEDY, "LLM, accuracy = greedy"),
                     (Variant.SIM, "tabular-LM simulator (B instances in one run)")):
        d = results.methods.get(v)
        if not d:
            continue
        rows = [[name, str(m.n_seeds), _mean_ci(m.acc.final, 100), _mean_ci(m.entropy.final),
                 _mean_ci(m.resp_len.final),
                 fraction_text(name, m.params, m.tokens, "prompt" if v is Variant.SIM else "update")
                 if name in PAPER_FRACTIONS else "-"]
                for name, m in d.methods.items()]
        out.append(f"**{where}**: mean over the last 20% of steps (accuracy: validation points), then mean "
                   "± 95% t-interval over seeds\n\n" + _table(["method", "seeds", "accuracy (%)", "entropy",
                                                              "response length", "token fraction"], rows))
    return "\n\n".join(out) or "No method runs."


def _sweeps_section(results: FigureResults) -> str:
    rows = []
    for (_, variant), d in sorted(results.sweeps.items(), key=lambda kv: (kv[0][0], kv[0][1] is Variant.SIM)):
        where = "tabular LM" if variant is Variant.SIM else "LLM"
        for v in d.values:
            rows.append([d.sweep, where, f"{d.knob}={v.value:g}", num(v.final_entropy), pct(v.final_acc, 1)])
    return (_table(["sweep", "where", "setting", "final entropy", "final accuracy"], rows)
            if rows else "No sweeps.")


def table1_cells(means, n_states: float) -> list[str]:
    """One Table 1 row's cells: each group's mean covariance, marked "too few states" when the group
    (:func:`figures.fig_covariance.top_group_size` of ``n_states``) holds fewer than ``MIN_GROUP_STATES``."""
    if len(means) != len(TOP_PERCENTS):
        raise ValueError(f"need {len(TOP_PERCENTS)} group means, got {len(means)}")
    n = int(n_states) if n_states == n_states and n_states >= 1 else 0
    cells = []
    for p, x in zip(TOP_PERCENTS, means):
        k = top_group_size(n, p) if n else 0
        cells.append(f"{x:.3g}" + (f" (too few states: {k})" if k < MIN_GROUP_STATES else ""))
    return cells


def _table1_section(table1: Table1Result | None, dynamics=None) -> str:
    llm = dynamics.runs[:1] if dynamics else ()
    if table1 is None and not llm:
        return "Not computed."
    head = ["group"] + [f"top {p:g}%" if p < 100 else "all" for p in TOP_PERCENTS]
    rows = [["paper (Qwen2.5-7B, step 1)", "5.654", "3.112", "1.385", "0.351", "0.152", "0.003"]]
    text = []
    if table1 is not None:
        c = table1.config
        rows.append(["ours (tabular LM)"] + table1_cells(table1.mean_cov, table1.n_tokens))
        text.append(f"Tabular LM: the first GRPO batch of the simulator (vocab {c['vocab']}, "
                    f"horizon {c['horizon']}, "
                    f"G={c['samples']}, {c['instances']} prompts, random initial logits with scale "
                    f"{c['init_scale']}, seed {c['seed']}; {table1.n_tokens} tokens; Eq. 10 centred per "
                    "prompt).")
    if llm:
        r = llm[0]
        rows.append([f"ours (LLM, {r.label}, step {r.first_step})"]
                    + table1_cells(r.table1, r.n_states_first))
        text.append(f"LLM: the tokens of the first diagnosed mini-batch of `{r.label}` "
                    f"({r.n_states_first:.0f} token states; `diag/cov_top_*`).")
    else:
        text.append("LLM: no run with `--diagnose-every`, so no LLM row.")
    text.append(f"A group of fewer than {MIN_GROUP_STATES} token states is marked \"too few states\": its "
                "mean is one or two tokens' covariance, not a tail of the distribution.")
    return " ".join(text) + "\n\n" + _table(head, rows)


def _fmt(d: dict, key: str) -> str:
    x, ci = d.get(key), d.get(key + "_ci")
    return "n/a" if x is None else f"{x:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _dynamics_section(results: FigureResults) -> str:
    d = results.dynamics
    if not d or not d.runs:
        return "No LLM run was trained with `--diagnose-every K`."
    rows = []
    for r in d.runs:
        s, dec = r.summary, r.summary.get("decomposition")
        lemma = [f"{s.get('median_r2_first', float('nan')):.4f}"]
        if not dec:
            rows.append([r.label, f"{s['diagnosed_steps']:.0f}", "not measured (old run)", "-", "-", "-", "-",
                         "-", *lemma])
            continue
        th = dec.get("theorem", {})
        rows.append([r.label, f"{s['diagnosed_steps']:.0f}",
                     " / ".join(pct(dec[t]["share"]) for t in ("own", "cross", "history")),
                     _fmt(dec["own"], "r2"), _fmt(dec["cross"], "r2"), _fmt(dec["linearised"], "r2"),
                     f"{_fmt(th, 'r2')}; sign {_fmt(th, 'sign_acc')}", th.get("eta_source", "?"), *lemma])
    return ("The paper checks Theorems 1-2 on LLMs by the similar shapes of two curves (Fig. 8). Here every "
            "token state of a mini-batch is measured at each diagnosed update: the observed ΔH over the full "
            "vocabulary, the linearised network change along the actual update and its split into the part "
            "produced by the tokens sampled at that state (own: the paper's mechanism), by the other "
            "tokens of the mini-batch (cross: generalisation across states) and by optimizer history "
            "(Adam momentum, weight decay); and the Theorem-1 prediction, with η from the optimizer (SGD) or "
            "fitted with η >= 0. Shares are of the summed |terms|, pooled over states; R² against the "
            "observed ΔH with 95% bootstrap intervals over states. Lemma 1 on the measured logit change is "
            "an identity (a random logit change fits as well), listed only as a numerical check. Figure "
            "`dynamics` shows the first update, one panel per term.\n\n"
            + _table(["run", "updates", "share own / cross / history", "R² own", "R² cross", "R² linearised",
                      "Theorem 1 R²; sign acc.", "η", "R² Lemma 1 (identity)"], rows))


def _verify_section(rows) -> str:
    if not rows:
        return "Not run."
    return _table(["statement", "paper ref.", "instances", "max error", "bound", "result"],
                  [[r.statement, r.reference, str(r.instances), f"{r.max_error:.2e}", r.bound,
                    "PASS" if r.passed else "FAIL"] for r in rows])


_MODEL_OF_OUTPUT = ("python3 -c 'import json, sys; t = sys.stdin.read(); "
                    "print(json.loads(t[t.index(\"{\"):])[\"model\"])'")
"""reads the model directory out of ``entropy-mech pretrain``'s JSON output"""


def model_variable(pretrain_name: str) -> str:
    """Shell variable holding a warm start's model directory: ``pretrain-m96`` -> ``MODEL_M96``."""
    if not pretrain_name:
        raise ValueError("empty warm-start name")
    return "MODEL_" + re.sub(r"\W", "_", pretrain_name.removeprefix("pretrain-")).upper()


def commands_section(run_results, out: str | Path = ".") -> str:
    """One pasteable ``entropy-mech`` line per run, from its ``spec.json``: after each warm start, a line
    ``MODEL_<SIZE>=<dir>`` sets the model directory its ``DONE.json`` records (or, when it did not finish,
    captures it from the warm start's output), and the runs use ``--model "$MODEL_<SIZE>"``."""
    lines = [f"cd {shlex.quote(str(out))}"]
    for r, spec in _specs(run_results):
        if not spec:
            lines.append(f"# {r['name']}: not started")
            continue
        note = "" if is_finished(r["dir"]) else "   # did not finish"
        if spec["kind"] == "pretrain":
            cmd = shlex.join(["entropy-mech", "pretrain", *spec["args"]])
            model, var = (read_done(r["dir"]) or {}).get("model"), model_variable(spec["name"])
            lines += ([cmd + note, f"{var}={shlex.quote(model)}   # the model directory it reports"] if model
                      else [f"{var}=$({cmd} | {_MODEL_OF_OUTPUT})" + note])
            continue
        args = [f'"${model_variable(spec["needs"])}"' if a == "{model}" else shlex.quote(a)
                for a in spec["args"]]
        out_args = ["--out", shlex.quote(f"runs/{Path(r['dir']).name}")]
        lines.append(" ".join(["entropy-mech", spec["kind"], *args, *out_args]) + note)
    if len(lines) == 1:
        return "No runs."
    return ("Paste into a shell (bash); each run's resolved configuration is in its `config.json` "
            "(`pretrain.json` in the model cache for warm starts).\n\n```bash\n" + "\n".join(lines) + "\n```")


def _score_note(results: FigureResults) -> str:
    """Which accuracy the LLM rows use, and why."""
    if results.llm_score is Score.GREEDY:
        return "LLM rows use the greedy validation accuracy (the paper's R) unless they say T=1"
    return ("LLM rows use the T=0.6 sampled validation accuracy (`val/acc_sampled`, 4 samples per "
            "prompt) unless they say greedy or T=1: the paper's R is greedy accuracy, but our warm "
            f"start already answers {pct(results.greedy_start, 0)} of the validation prompts correctly "
            f"when greedy (>= {pct(GREEDY_SATURATED)} counts as saturated), so greedy accuracy has no "
            "room to rise and only sampled accuracy shows what RL changes. The law, early-prediction "
            "and method tables below use it too (their greedy versions follow them); the `methods` "
            "figure's accuracy panel is greedy")


def _figures_section(results: FigureResults) -> str:
    files = results.figure_files()
    return "\n".join(f"- `{k}`: " + ", ".join(f"[{Path(p).name}]({Path(p).name})" for p in files[k])
                     for k in sorted(files)) + ("\n\nSkipped (no runs): " + ", ".join(results.skipped)
                                                if results.skipped else "")


def write_report(out: str | Path, results: FigureResults, *, verify_rows=None,
                 table1: Table1Result | None = None, run_results=None, profile: str = "",
                 wall_s: float | None = None) -> Path:
    """Write ``<out>/report.md`` from the typed results (nothing is drawn or fitted here); return its path."""
    out = Path(out)
    failed = [r for r in (run_results or []) if not r.get("ok")]
    rows = claim_rows(results, verify_rows, table1, profile=profile)
    parts = [
        "# The Entropy Mechanism of RL for Reasoning LMs: our reproduction",
        f"Profile `{profile or 'custom'}`" + (f", wall time {wall_s / 60:.1f} min" if wall_s else "")
        + ". Tiny Qwen2-style models on synthetic arithmetic (CPU) and tabular softmax simulators "
          "stand in for "
          "Qwen2.5 0.5B-32B on math; read every number with that scale in mind. Regenerate with "
          f"`entropy-mech reproduce --profile {profile or 'quick'} --out {out}`.",
        "## Summary", summary_section(rows),
        "## Run labels", glossary_section(run_results),
        "## Claims",
        "Verdicts are mechanical, by the rule in the last column; \"does not hold\" means our runs at this "
        "scale do not show the effect, not that the paper is wrong. A likely reason is given only where "
        f"a declared test on our data shows one (`reproduce/reasons.py`). {_score_note(results)}; "
        "tabular-LM rows use the simulator's exact expected reward. The Fig. 8-right analogue (covariance "
        "by prompt accuracy) comes from the simulator."
        + (" \"not measured in quick\" marks claims whose runs only `--profile full` makes."
           if profile == "quick" else ""),
        claims_table(rows),
        "## Numerical checks (identities and Taylor expansions: not evidence for the paper)",
        "These rows check our measurements and mathematics; passing them says nothing about the paper's "
        "mechanism, and the summary does not count them.",
        checks_table(rows),
        "## Theorem verification (`entropy-mech verify`)", _verify_section(verify_rows),
        "## Entropy-performance law (Eq. 6, Figs. 3, 5, 7)", _law_section(results),
        "## Method comparison (Table 2 analogue, Fig. 11)", _methods_section(results),
        "## LLM entropy dynamics, state by state (Fig. 8 made exact)", _dynamics_section(results),
        "## Covariance by top-percentile group (Table 1 analogue)", _table1_section(table1, results.dynamics),
        "## Entropy-control sweeps (Figs. 9, 10, 12)", _sweeps_section(results),
        "## Figures", _figures_section(results),
        "## Commands to rerun each experiment", commands_section(run_results, out),
    ]
    if failed:
        parts += ["## Failed runs",
                  "\n".join(f"- {r['name']}: {r.get('error') or r.get('log')}" for r in failed)]
    return atomic_write_text(out / "report.md", "\n\n".join(parts) + "\n")
