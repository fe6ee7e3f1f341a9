"""The report a newcomer reads: summary counts that match the claim rows (and follow a changed verdict), the
run-label glossary, rerun commands that the real ``entropy-mech`` parser accepts, figures at >= 150 dpi,
Table 1 groups marked "too few states", likely reasons only where the data shows them, and the run label
on ``entropy-mech fit --plot`` curves."""

import argparse
import importlib
import re
import shlex
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cli.main import SUBCOMMANDS
from fake_runs import decomposition, fake_states, write_llm_run, write_sim_lm, write_sim_pg
from figures.draw import draw_all
from figures.fig_collapse import plot_collapse
from figures.fig_covariance import MIN_GROUP_STATES, top_group_size
from figures.results import Variant
from reproduce.claim_rules import FAILS, HOLDS, NA, PARTLY, VERDICTS, Evidence, summarize
from reproduce.claims import CLAIMS, claim_rows
from reproduce.experiments import MODEL_PLACEHOLDER, check_plan, run_dir
from reproduce.plans import plan
from reproduce.reasons import decomposition_reason, fraction_text, method_gain_reason
from reproduce.report import commands_section, model_variable, summary_section, table1_cells, write_report
from rundir.files import atomic_write_json
from rundir.finished import mark_finished


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    dirs = [write_llm_run(root / f"g{s}", seed=s, size_name="m96", tags={"group": "methods"},
                          diagnose_every=20) for s in (0, 1)]
    dirs += [write_llm_run(root / f"k{s}", objective="kl_cov", seed=s, h_end=0.5, b=0.95, size_name="m96",
                           params={"kl_ratio": 0.2}) for s in (0, 1)]
    dirs += [write_sim_lm(root / "sim"), write_sim_pg(root / "pg1", 0.01), write_sim_pg(root / "pg2", 0.1)]
    return draw_all(dirs, root / "figs"), root


def _quick_run_results(root, finished_warm_start: bool = True):
    """Run folders holding the ``spec.json`` of every spec of the real quick plan (nothing is run); the warm
    start's ``DONE.json`` names a model directory with a space in it."""
    specs = plan("quick")
    by_name = check_plan(specs)
    results = []
    for s in specs:
        d = run_dir(s, root, by_name)
        d.mkdir(parents=True)
        atomic_write_json(d / "spec.json", {"name": s.name, "kind": s.kind, "args": list(s.args),
                                            "needs": s.needs, "tags": s.tags})
        if s.kind == "pretrain" and finished_warm_start:
            mark_finished(d, {"model": str(root / "model cache" / "arithmetic-abc")})
        results.append({"name": s.name, "ok": True, "dir": str(d)})
    return results


def _parse(argv: list[str]) -> argparse.Namespace:
    """``entropy-mech <command> ...`` parsed by the real parser of that subcommand (nothing is run)."""
    assert argv[0] == "entropy-mech", argv
    module = importlib.import_module(SUBCOMMANDS[argv[1]][0])
    parser = argparse.ArgumentParser(prog=f"entropy-mech {argv[1]}")
    module.add_arguments(parser)
    return parser.parse_args(argv[2:])


def _check_commands(block: str) -> list[argparse.Namespace]:
    """Parse every line of a commands block as bash would see it: ``VAR=value`` / ``VAR=$(cmd | ...)``
    lines define variables, ``"$VAR"`` is expanded, comments dropped; each command goes through
    :func:`_parse`. Returns the parsed namespaces."""
    assert "<" not in block and ">" not in block, block
    env, parsed = {}, []
    for line in block.splitlines():
        if not line.strip() or line.startswith(("cd ", "#")):
            continue
        if m := re.fullmatch(r"(\w+)=\$\((entropy-mech .*?) \| python3 -c .*\)(\s*#.*)?", line):
            parsed.append(_parse(shlex.split(m[2], comments=True)))
            env[m[1]] = "/captured/model"
            continue
        words = shlex.split(line, comments=True)
        if len(words) == 1 and (m := re.fullmatch(r"(\w+)=(.+)", words[0])):
            env[m[1]] = m[2]
            continue
        words = [re.sub(r"\$(\w+)", lambda v: env[v[1]], w) for w in words]  # "$VAR" is one word
        parsed.append(_parse(words))
    return parsed


def _code_block(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1] if heading else text
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def test_report_has_summary_glossary_and_runnable_commands(drawn, tmp_path):
    results, _ = drawn
    runs = _quick_run_results(tmp_path)
    text = write_report(tmp_path, results, run_results=runs, profile="quick").read_text()
    heads = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert heads[:3] == ["## Summary", "## Run labels", "## Claims"]
    assert "| `s0`, `s1`, ... | the run's random seed |" in text and "`m96`: the default model" in text
    # the summary's counts are those of the claims table's verdict column
    claims = text.split("## Claims", 1)[1].split("## ", 1)[0]
    table = [ln for ln in claims.splitlines() if ln.startswith("| ")]
    verdicts = [ln.split(" | ")[4] for ln in table[1:]]
    assert set(verdicts) <= set(VERDICTS)
    counts = {v: verdicts.count(v) for v in VERDICTS}
    summary = text.split("## Summary", 1)[1].split("## ", 1)[0]
    assert (f"Of {len(verdicts)} claims: **{counts[HOLDS]} hold**, **{counts[PARTLY]} partly**, "
            f"**{counts[FAILS]} do not hold**, **{counts[NA]} not measured**") in summary
    assert re.search(r"^1\. \*\*Entropy collapses as RL raises accuracy\*\*: holds", summary, re.M)
    assert len(re.findall(r"^\d\. \*\*", summary, re.M)) == 3
    # every rerun command parses with the real CLI; the runs use the warm start's recorded model directory
    block = _code_block(text, "## Commands to rerun each experiment")
    parsed = _check_commands(block)
    assert len(parsed) == len(runs)
    models = [vars(p)["cfg:model"] for p in parsed if "cfg:model" in vars(p)]  # the train runs
    assert len(models) == sum(r["name"].startswith("llm-") for r in runs)
    assert set(models) == {str(tmp_path / "model cache" / "arithmetic-abc")}
    assert "MODEL_M96=" in block and MODEL_PLACEHOLDER not in block
    llm_t1 = next(ln for ln in text.splitlines() if ln.startswith("| ours (LLM, m96 grpo s0"))
    assert llm_t1.count("too few states") == 4  # 24 token states: top 0.02 / 0.2 / 2% one state, 20% four
    kl = next(ln for ln in text.splitlines() if ln.startswith("| kl_cov | 2 |"))
    assert "k = 0.2 vs the paper's 2e-3 (100x larger, as our batches are tiny" in kl


def test_commands_capture_the_model_when_the_warm_start_did_not_finish(tmp_path):
    runs = _quick_run_results(tmp_path, finished_warm_start=False)
    block = _code_block(commands_section(runs, tmp_path), "")
    assert re.search(r"^MODEL_M96=\$\(entropy-mech pretrain .* \| python3 -c ", block, re.M)
    parsed = _check_commands(block)
    assert len(parsed) == len(runs)
    assert {vars(p)["cfg:model"] for p in parsed if "cfg:model" in vars(p)} == {"/captured/model"}
    bad = block.replace('"$MODEL_M96"', "<model dir printed by the pretrain-m96 line>")
    with pytest.raises(AssertionError):
        _check_commands(bad)
    with pytest.raises(SystemExit):  # an option the parser does not know fails the check
        _check_commands(block.replace("--n-val", "--n-vals"))
    assert model_variable("pretrain-m96") == "MODEL_M96"
    with pytest.raises(ValueError):
        model_variable("")


def test_summary_counts_follow_a_changed_verdict(drawn):
    results, _ = drawn
    rows = claim_rows(results)
    s = summarize(rows)
    assert sum(s.counts.values()) == sum(not r.check for r in rows) < len(rows)  # checks are not counted
    assert [r.key for r in s.findings] == sorted(r.key for r in s.findings) and len(s.findings) == 3
    i = next(i for i, r in enumerate(rows) if r.verdict == HOLDS)
    flipped = rows[:i] + [replace(rows[i], verdict=FAILS)] + rows[i + 1:]
    t = summarize(flipped)
    assert t.counts[HOLDS] == s.counts[HOLDS] - 1 and t.counts[FAILS] == s.counts[FAILS] + 1
    assert summary_section(flipped) != summary_section(rows)
    # through the evidence: Cov anti-correlated with -dH -> that claim no longer holds, the counts move
    cov = results.covariance
    flipped_cov = replace(results, covariance=replace(
        cov, cov_dh=tuple(replace(r, pearson_raw=-r.pearson_raw, pearson_raw_ci=(-1.0, -0.5))
                          for r in cov.cov_dh)))
    moved = summarize(claim_rows(flipped_cov)).counts
    assert moved[HOLDS] < s.counts[HOLDS] and moved[FAILS] > s.counts[FAILS]
    assert sum(moved.values()) == sum(s.counts.values())
    # a key finding falls back to its tabular-LM twin when the LLM row is not measured
    no_llm = [replace(r, verdict=NA) if r.claim == "entropy collapses under GRPO (LLM)" else r for r in rows]
    assert summarize(no_llm).findings[0].claim == "entropy collapses under GRPO (tabular LM)"
    with pytest.raises(ValueError, match="unknown verdict"):
        summarize([replace(rows[0], verdict="maybe")])


def test_table1_groups_with_too_few_states_are_marked():
    means = np.array([5.0, 4.0, 2.0, 0.5, 0.2, 0.01])
    small = table1_cells(means, 60)  # 60 states: the top 0.02 / 0.2 / 2% groups are one state each
    assert [("too few states" in c) for c in small] == [True, True, True, False, False, False]
    assert "too few states: 1" in small[0]
    assert not any("too few states" in c for c in table1_cells(means, 100_000))
    assert top_group_size(4096, 0.2) == 8 >= MIN_GROUP_STATES and top_group_size(60, 2.0) == 1
    with pytest.raises(ValueError):
        table1_cells(means[:3], 60)
    with pytest.raises(ValueError):
        top_group_size(0, 2.0)
    # the Table 1 claim on an LLM batch that small is not measured, and says why
    spec = next(s for s in CLAIMS if s.claim.endswith("top-50% mean (tabular LM)"))
    def row(n):
        return spec.row(Evidence(figures=None, table1=SimpleNamespace(mean_cov=means, n_tokens=n)), "quick")

    assert row(60).verdict == NA and "too few states" in row(60).ours
    assert row(10**5).verdict == HOLDS


def test_figures_are_saved_at_150_dpi_or_more(drawn, tmp_path):
    _, root = drawn
    files = plot_collapse([root / "g0", root / "g1"], tmp_path / "c").files
    for f in files:
        with Image.open(f) as im:
            assert min(im.info["dpi"]) >= 150, im.info
            assert im.size[0] >= 150 * 2 * 4.2 * 0.9  # two 4.2-inch panels, cropped only to the tight box
    for f in (root / "figs").glob("*.png"):
        with Image.open(f) as im:
            assert min(im.info["dpi"]) >= 150, f


def test_reasons_are_stated_only_when_the_data_shows_them(drawn):
    results, _ = drawn
    ev = Evidence(results)
    runs = results.dynamics.runs
    rng = np.random.default_rng(0)

    def with_decomposition(mode):
        dec = decomposition([fake_states(rng, mode=mode) for _ in range(3)])
        return replace(results, dynamics=replace(results.dynamics, runs=tuple(
            replace(r, summary={**r.summary, "decomposition": dec}) for r in runs)))

    assert "other states (cross share" in decomposition_reason(Evidence(with_decomposition("cross")))
    assert decomposition_reason(Evidence(with_decomposition("own"))) is None
    m = results.methods[Variant.LLM].methods
    g = m["grpo"]
    at_ceiling = replace(g, acc=replace(g.acc, final=g.acc.final._replace(mean=0.99)))
    high = replace(results, methods={**results.methods, Variant.LLM: replace(
        results.methods[Variant.LLM], methods={**m, "grpo": at_ceiling})})
    assert "GRPO already ends at 99.0%" in method_gain_reason(Evidence(high), Variant.LLM, "kl_cov")
    low = replace(g, acc=replace(g.acc, final=g.acc.final._replace(mean=0.2, half=0.001)))
    far = replace(results, methods={**results.methods, Variant.LLM: replace(
        results.methods[Variant.LLM], methods={**m, "grpo": low})})
    assert method_gain_reason(Evidence(far), Variant.LLM, "kl_cov") is None
    assert all(r.reason == "" for r in claim_rows(results) if r.verdict in (HOLDS, NA))
    assert method_gain_reason(ev, Variant.SIM, "kl_cov") is None  # no simulator KL-Cov run here
    assert "1000x larger" in fraction_text("clip_cov", {"clip_ratio": 0.2}, 80.0)
    assert fraction_text("kl_cov", {}, float("nan")) == "k = 2e-3 vs the paper's 2e-3"
    with pytest.raises(ValueError):
        fraction_text("grpo", {}, 1.0)


def test_fit_plot_labels_curves_with_the_run(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from cli.fit import run_label
    from cli.main import main

    run = tmp_path / "my-run"
    write_llm_run(run)
    shown = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (shown.append(fig), close(fig)))
    assert main(["fit", str(run / "metrics.jsonl"), "--n-boot", "0", "--plot", str(tmp_path / "f.png")]) == 0
    labels = shown[0].axes[0].get_legend_handles_labels()[1]
    assert "my-run" in labels and "jsonl" not in " ".join(labels)
    assert run_label("runs/b/tensorboard") == "b" and run_label("export.csv") == "export"
    assert run_label(str(run / "metrics.jsonl")) == "my-run"
    with pytest.raises(ValueError):
        run_label("")
