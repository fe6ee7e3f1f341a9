"""The experiment runner (reuse / resume), the plans, the report and the two CLIs."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fake_runs import write_llm_run, write_sim_lm, write_sim_pg
from reproduce.claim_rules import FAILS, HOLDS, NA, PARTLY, Evidence, grade
from reproduce.claims import CLAIMS, claim_rows
from cli.main import main
from figures.draw import choose_llm_score, draw_all
from figures.results import Variant
from reproduce.experiments import MODEL_PLACEHOLDER, Spec, check_plan, execute, is_done, run_dir, spec_hash
from reproduce.plans import plan
from reproduce.report import write_report
from reproduce.pipeline import reproduce
from theory.law import fit_entropy_law

FAKE_CLI = """
import json, pathlib, sys
argv = sys.argv[1:]
log = pathlib.Path({log!r})
with log.open("a") as f:  # append: two jobs may log at once
    f.write(" ".join(argv) + "\\n")
if "--fail" in argv:
    sys.exit(3)
if argv[0] == "pretrain":
    print(json.dumps({{"model": {model!r}, "cached": False, "val": {{}}}}))
"""


@pytest.fixture
def fake_cli(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    script = tmp_path / "fake.py"
    log = tmp_path / "calls.txt"
    script.write_text(FAKE_CLI.format(log=str(log), model=str(model)))
    return [sys.executable, str(script)], log, model


def _specs():
    return [Spec("pre", "pretrain", ("--task", "arithmetic")),
            Spec("t1", "train", ("--model", MODEL_PLACEHOLDER, "--steps", "3"), needs="pre"),
            Spec("s1", "simulate", ("--steps", "2"))]


def test_spec_validation_and_hash():
    with pytest.raises(ValueError, match="unknown spec kind"):
        Spec("x", "nope", ())
    with pytest.raises(ValueError, match="--out"):
        Spec("x", "simulate", ("--out", "d"))
    with pytest.raises(ValueError, match="exactly when needs"):
        Spec("x", "train", ("--model", MODEL_PLACEHOLDER))
    with pytest.raises(ValueError, match="duplicate"):
        check_plan([Spec("a", "simulate", ()), Spec("a", "simulate", ())])
    with pytest.raises(ValueError, match="not a pretrain spec"):
        check_plan([Spec("t", "train", (MODEL_PLACEHOLDER,), needs="missing")])
    by = check_plan(_specs())
    h = spec_hash(by["t1"], by)
    by2 = check_plan([Spec("pre", "pretrain", ("--task", "countdown")), *_specs()[1:]])
    assert spec_hash(by2["t1"], by2) != h  # a different warm start changes the train run's hash


def test_a_changed_task_default_changes_the_run_hash(monkeypatch):
    """Finished runs made under an old task default are not reused: the default knobs are hashed."""
    import dataclasses

    from llm_rl import tasks as tasks_pkg

    specs = [Spec("pre", "pretrain", ("--task", "stepwise")),
             Spec("t1", "train", ("--task", "stepwise", "--model", MODEL_PLACEHOLDER), needs="pre")]
    by = check_plan(specs)
    before = spec_hash(by["pre"], by), spec_hash(by["t1"], by)
    changed = dataclasses.make_dataclass("Stepwise2", [("style_signal", float, 0.1)],
                                         bases=(tasks_pkg.TASKS["stepwise"],), frozen=True)
    monkeypatch.setitem(tasks_pkg.TASKS, "stepwise", changed)
    after = spec_hash(by["pre"], by), spec_hash(by["t1"], by)
    assert after[0] != before[0] and after[1] != before[1]


def test_finished_specs_are_not_rerun(tmp_path, fake_cli):
    cli, log, model = fake_cli
    specs = _specs()
    res = execute(specs, tmp_path / "out", jobs=2, progress=False, cli=cli)
    assert all(r["ok"] and not r["skipped"] for r in res)
    calls = log.read_text().splitlines()
    assert len(calls) == 3 and any(str(model) in c for c in calls if c.startswith("train"))
    by = check_plan(specs)
    assert all(is_done(s, tmp_path / "out", by) for s in specs)
    res = execute(specs, tmp_path / "out", jobs=2, progress=False, cli=cli)
    assert all(r["skipped"] for r in res) and len(log.read_text().splitlines()) == 3
    # a killed run (no DONE.json) is wiped and rerun; the others are kept
    d = run_dir(specs[2], tmp_path / "out", by)
    (d / "DONE.json").unlink()
    (d / "partial.txt").write_text("half")
    res = execute(specs, tmp_path / "out", jobs=1, progress=False, cli=cli)
    assert [r["skipped"] for r in res] == [True, True, False] and not (d / "partial.txt").exists()
    assert len(log.read_text().splitlines()) == 4


def test_failures_are_reported_and_dependants_skipped(tmp_path, fake_cli):
    cli, log, _ = fake_cli
    specs = [Spec("pre", "pretrain", ("--fail",)), Spec("t1", "train", (MODEL_PLACEHOLDER,), needs="pre")]
    res = execute(specs, tmp_path, progress=False, cli=cli)
    assert [r["ok"] for r in res] == [False, False] and "pre failed" in res[1]["error"]
    assert len(log.read_text().splitlines()) == 1


def test_plans_are_valid():
    for profile in ("quick", "full"):
        specs = plan(profile)
        check_plan(specs)
        assert {s.kind for s in specs} == {"pretrain", "train", "simulate"}
    quick = plan("quick")
    assert sum(s.est_s for s in quick) / 2 < 10 * 60  # two workers, leaving room for drawing and verify
    assert sum(s.est_s for s in plan("full")) / 2 < 100 * 60
    with pytest.raises(ValueError, match="unknown profile"):
        plan("medium")


def test_grade():
    assert grade(0.9, lambda x: x > 0.8, lambda x: x > 0.5) == HOLDS
    assert grade(0.6, lambda x: x > 0.8, lambda x: x > 0.5) == PARTLY
    assert grade(0.1, lambda x: x > 0.8, lambda x: x > 0.5) == FAILS
    assert grade(float("nan"), lambda x: True, lambda x: True) == NA


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    root = tmp_path_factory.mktemp("r")
    dirs = [write_llm_run(root / f"g{s}", seed=s, size_name="m96", tags={"group": "methods"},
                          diagnose_every=20)
            for s in (0, 1)]
    dirs += [write_llm_run(root / f"k{s}", objective="kl_cov", seed=s, h_end=0.5, b=0.95, size_name="m96")
             for s in (0, 1)]
    dirs += [write_llm_run(root / "e", entropy_coef=0.01, h_end=1.5, size_name="m96",
                           tags={"group": "sweep", "sweep": "entropy_coef", "value": 0.01})]
    dirs += [write_sim_lm(root / "sim"), write_sim_pg(root / "pg1", 0.01), write_sim_pg(root / "pg2", 0.1)]
    out = root / "figs"
    return draw_all(dirs, out), out, dirs


def test_draw_all_selects_runs(drawn):
    results, out, _ = drawn
    files = results.figure_files()
    for name in ("collapse", "collapse_t1", "law", "law_t1", "prediction", "covariance", "methods",
                 "sweep_entropy_coef", "theory",
                 "collapse_sim", "methods_sim", "dynamics"):
        assert name in files, name
        assert all(p.is_file() for p in files[name])
    assert len(results.collapse[Variant.LLM].runs) == 2  # only plain GRPO runs
    dyn = results.dynamics.runs  # only the runs with diagnostics, the GRPO baseline first
    assert [Path(r.dir).name for r in dyn] == ["g0", "g1"] and dyn[0].first_step == 0
    assert dyn[0].summary["diagnosed_steps"] == 3 and dyn[0].summary["median_r2_first"] > 0.9
    assert [v.value for v in results.sweep("entropy_coef").values] == [0.0, 0.01]
    assert "sweep_ref_kl_coef" in results.skipped


def test_claims_and_report(drawn, tmp_path):
    results, _, _ = drawn
    rows = {r.claim: r for r in claim_rows(results)}
    assert rows["kl_cov keeps entropy above GRPO (LLM)"].verdict == HOLDS
    assert rows["R = -a exp(H) + b fits R vs H (LLM)"].verdict == HOLDS
    assert rows["a, b log-linear in model size (LLM)"].verdict == NA
    lemma1 = rows["Lemma 1 on the measured logit change gives each state's dH (LLM; identity check)"]
    assert lemma1.verdict == HOLDS and lemma1.check
    assert "a few tokens carry extreme Cov: top-0.2% / top-50% mean (LLM)" in rows
    assert rows["GRPO raises the training reward (LLM; sanity check of the trainer)"].verdict == HOLDS
    assert rows["R = -a exp(H) + b fits R vs H, R = T=1 accuracy (LLM)"].verdict == HOLDS
    law, law_t1 = results.law[Variant.LLM], results.law[Variant.T1]
    assert law_t1.groups["m96"].fit.b == pytest.approx(law.groups["m96"].fit.b - 0.05)
    assert rows["entropy bonus is hard to tune: large coef explodes entropy (LLM)"].verdict == HOLDS
    path = write_report(tmp_path, results, profile="test")
    text = path.read_text()
    assert "## Claims" in text and "| kl_cov keeps entropy above GRPO (LLM)" in text
    assert "Table 2 analogue" in text and "± " in text
    assert "## LLM entropy dynamics, state by state" in text and "| ours (LLM, " in text


def _verdict(results, claim: str) -> str:
    spec = next(s for s in CLAIMS if s.claim == claim)
    return spec.row(Evidence(results)).verdict


def test_claim_rules_fail_on_flipped_or_shuffled_evidence(drawn):
    """A declared claim grades the measured effect, not its mere presence: with the evidence sign-flipped,
    the compared runs swapped or R shuffled, a claim that held does not hold."""
    results, _, _ = drawn
    assert len({s.claim for s in CLAIMS}) == len(CLAIMS)  # each claim declared once
    assert all(s.rule.verdict(None) == NA for s in CLAIMS)
    llm, rng = Variant.LLM, np.random.default_rng(0)
    collapse, law, methods, cov, th = (results.collapse[llm], results.law[llm], results.methods[llm],
                                       results.covariance, results.theory)
    m = methods.methods
    reversed_runs = tuple(replace(r, acc_start=r.acc_end, acc_end=r.acc_start) for r in collapse.runs)
    shuffled = {k: replace(g, fit=fit_entropy_law(g.H, rng.permutation(g.R), n_boot=0))
                for k, g in law.groups.items()}
    broken = {
        "accuracy rises while entropy falls (LLM)": replace(
            results, collapse={**results.collapse, llm: replace(collapse, runs=reversed_runs)}),
        "Cov and -dH have similar dynamics (LLM)": replace(results, covariance=replace(
            cov, cov_dh=tuple(replace(r, pearson_raw=-r.pearson_raw, pearson_raw_ci=(-1.0, -0.5))
                              for r in cov.cov_dh))),
        "kl_cov keeps entropy above GRPO (LLM)": replace(results, methods={**results.methods, llm: replace(
            methods, methods={**m, "grpo": m["kl_cov"], "kl_cov": m["grpo"]})}),
        "R = -a exp(H) + b fits R vs H (LLM)": replace(
            results, law={**results.law, llm: replace(law, groups=shuffled)}),
        "first-order error is O(eta^2) (simulator; beyond the paper)": replace(
            results, theory=replace(th, step_size=replace(th.step_size, slope=-th.step_size.slope))),
    }
    for claim, wrong in broken.items():
        assert _verdict(results, claim) == HOLDS, claim
        assert _verdict(wrong, claim) == FAILS, claim


def test_figures_cli(drawn, tmp_path, capsys):
    _, _, dirs = drawn
    assert main(["figures", *map(str, dirs), "--out", str(tmp_path), "--only", "collapse", "methods"]) == 0
    assert (tmp_path / "collapse.png").is_file() and not (tmp_path / "law.png").exists()
    assert main(["figures", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_reproduce_end_to_end_on_simulators(tmp_path):
    specs = [Spec("sim-lm-grpo", "simulate", ("--world", "tabular_lm", "--rule", "grpo", "--vocab", "3",
                                               "--horizon", "2", "--steps", "15", "--instances", "8",
                                               "--init", "random", "--optimizer", "adam", "--lr", "0.05")),
             Spec("pg", "simulate", ("--world", "bandit", "--rule", "pg", "--init", "random",
                                     "--steps", "1"))]
    res = reproduce("quick", tmp_path, progress=False, verify_instances=3, specs=specs, table1_instances=4)
    assert all(r["ok"] for r in res["run_results"])
    text = res["report"].read_text()
    assert "entropy-mech simulate --world tabular_lm" in text and "PASS" in text
    assert (tmp_path / "collapse_sim.png").is_file()
    done = json.loads((run_dir(specs[0], tmp_path, check_plan(specs)) / "DONE.json").read_text())
    assert done["wall_s"] > 0
    again = reproduce("quick", tmp_path, progress=False, verify_instances=3, specs=specs, table1_instances=4)
    assert all(r["skipped"] for r in again["run_results"])


@pytest.mark.slow
def test_reproduce_with_a_real_llm_run(tmp_path, monkeypatch):
    """A warm start of 20 steps and a 4-step GRPO run through the real CLI feed the LLM figures."""
    monkeypatch.setenv("ENTROPY_MECH_CACHE", str(tmp_path / "cache"))
    specs = [Spec("pretrain-m32", "pretrain", ("--task", "arithmetic", "--steps", "20", "--n-val", "16",
                                                "--model-size", "hidden_size=32",
                                                "--model-size", "num_layers=1")),
             Spec("llm-grpo", "train", ("--task", "arithmetic", "--model", MODEL_PLACEHOLDER, "--steps", "4",
                                        "--val-every", "1", "--n-val", "16", "--prompts-per-step", "4",
                                        "--no-dynamic-sampling", "--diagnose-every", "2"),
                  needs="pretrain-m32",
                  tags={"size_name": "m32"})]
    res = reproduce("quick", tmp_path / "out", progress=False, verify_instances=3, specs=specs,
                    table1_instances=4)
    assert all(r["ok"] for r in res["run_results"]), res["run_results"]
    assert len(res["results"].collapse[Variant.LLM].runs) == 1
    assert res["results"].methods[Variant.LLM].methods["grpo"].entropy.step.size == 4
    assert res["results"].dynamics.runs[0].summary["diagnosed_steps"] == 2
    assert "R² Lemma 1 (identity)" in Path(res["report"]).read_text()


def test_report_scores_llm_by_sampled_accuracy_when_greedy_saturates(tmp_path):
    """Greedy accuracy starting >= 90% is saturated: claims, law and methods switch to val/acc_sampled."""
    dirs = []
    for name, obj, seed in (("g0", "grpo", 0), ("g1", "grpo", 1), ("k0", "kl_cov", 0)):
        d = write_llm_run(tmp_path / name, objective=obj, seed=seed, a=0.05, b=1.04, size_name="m96")
        recs = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
        for r in recs:
            if "val/acc" in r:
                r["val/acc_sampled"] = 7 * r["val/acc"] - 6  # ~33% -> ~90%: room to rise
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
        (d / "DONE.json").write_text("{}")
        spec = json.loads((d / "spec.json").read_text())
        spec.update(kind="train", args=["--task", "arithmetic"], needs=None)
        (d / "spec.json").write_text(json.dumps(spec))
        dirs.append(d)
    out = tmp_path / "out"
    results = choose_llm_score(draw_all(dirs, out), dirs, out)
    text = write_report(out, results, run_results=[{"name": d.name, "ok": True, "dir": str(d)} for d in dirs],
                        profile="quick").read_text()
    assert "T=0.6 sampled validation accuracy" in text and (out / "collapse_sampled.png").is_file()
    rows = {r.claim: r for r in claim_rows(results, profile="quick")}
    assert rows["a, b log-linear in model size (LLM)"].ours.startswith("not measured in quick")
    line = next(ln for ln in text.splitlines() if ln.startswith("| accuracy rises while entropy falls (LLM)"))
    assert "(T=0.6 samples)" in line and "| holds |" in line
    assert "| greedy accuracy (the paper's R) rises while entropy falls (LLM)" in text
    assert "not measured in quick" in text


def test_quick_plan_runs_the_collapse_benchmark_settings():
    quick = plan("quick")
    assert [s.name for s in quick if s.kind == "pretrain"] == ["pretrain-m96"]
    kl = next(s for s in quick if s.name.startswith("llm-kl_cov"))
    assert "kl_ratio=0.05" in kl.args and "--minibatches" in kl.args
    llm = [s for s in quick if s.kind != "simulate"]
    assert all(s.args[s.args.index("--task") + 1] == "stepwise" for s in llm)  # reasoning-length responses
    for obj in ("grpo", "kl_cov"):  # at least 3 seeds per method
        assert len({s.tags["seed"] for s in llm if s.tags.get("objective") == obj}) >= 3
    full_objectives = {s.tags.get("objective") for s in plan("full") if s.kind == "train"}
    assert full_objectives >= {"grpo", "kl_cov", "clip_cov", "clip_higher"}
