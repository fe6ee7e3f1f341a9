"""One vocabulary, every config field an option with its default shown, and ``--config FILE`` for
``entropy-mech simulate / train / pretrain`` (cli/config_args.py)."""

import argparse
import dataclasses
import json
import re

import pytest
import yaml

from cli import eval as eval_cli
from cli import pretrain as pretrain_cli
from cli import simulate as sim_cli
from cli import train as train_cli
from cli.common import HelpFormatter
from cli.main import main
from llm_rl.config import DataConfig, ObjectiveConfig, OptimConfig, RolloutConfig, TrainConfig
from llm_rl.pretrain import PretrainConfig
from rundir.files import atomic_write_json, environment_info, save_run_config
from simulators.config import SimConfig
from simulators.run import load_run

COMMANDS = {"simulate": (sim_cli, SimConfig), "train": (train_cli, TrainConfig),
            "pretrain": (pretrain_cli, PretrainConfig)}


def _parser(module):
    parser = argparse.ArgumentParser(prog="entropy-mech x", formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return parser


def _parse(module, argv):
    return _parser(module).parse_args(argv)


def _leaf_fields(cls, prefix=()):
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _leaf_fields(type(default), (*prefix, f.name))
        else:
            yield ".".join((*prefix, f.name))


def _write(path, data, fmt):
    if fmt == "yaml":
        path.write_text(yaml.safe_dump(json.loads(json.dumps(data))))  # JSON first: YAML has no tuples
    else:
        path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_field_is_an_option_with_its_default_in_help(command):
    module, cls = COMMANDS[command]
    parser = _parser(module)
    text = parser.format_help()
    spec = module.config_args()
    by_path = spec.by_path
    assert set(by_path) == set(_leaf_fields(cls)), "a config field has no option"
    actions = parser._option_string_actions
    for dotted, option in by_path.items():
        assert option.flag in text, dotted
        help_text = actions[option.flag].help
        assert "(default: " in help_text or "(required" in help_text, (dotted, help_text)
        if dotted == "steps":
            assert f"(default: {getattr(cls(), 'steps')})" in help_text
    assert "--config" in text and "Settings: command-line options > --config FILE > defaults" in text
    for alias, canonical in spec.alias_pairs():
        assert f"{alias} = {canonical}" in " ".join(text.split())
        options_part = text.split("Old spellings")[0]
        assert not re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", options_part), alias  # hidden


def test_shared_vocabulary_across_simulate_and_train():
    sim, train = _parser(sim_cli).format_help(), _parser(train_cli).format_help()
    for flag in ("--objective-param", "--loss-agg-mode", "--ppo-epochs", "--group-size", "--advantage",
                 "--seed", "--steps", "--lr", "--out", "--objective", "--device", "--config"):
        assert f"{flag} " in sim and f"{flag} " in train, flag
    pre = _parser(pretrain_cli).format_help()
    for flag in ("--task", "--knob", "--seed", "--steps", "--lr", "--split-seed", "--n-train", "--n-val",
                 "--config"):
        assert f"{flag} " in pre and f"{flag} " in train, flag
    ev = _parser(eval_cli).format_help()
    for flag in ("--task", "--knob", "--split-seed", "--n-val", "--val-samples", "--val-temperature",
                 "--seed", "--device", "--model"):
        assert f"{flag} " in ev and f"{flag} " in train, flag


def test_defaults_give_the_dataclass_defaults(tmp_path):
    assert sim_cli.config_from_args(_parse(sim_cli, ["--out", "x"])) == SimConfig()
    model = str(tmp_path / "model")
    cfg = train_cli.build_config(_parse(train_cli, ["--task", "countdown", "--model", model, "--out", "x"]))
    assert cfg == TrainConfig(model=model, data=DataConfig(task="countdown"))
    assert pretrain_cli.config_from_args(_parse(pretrain_cli, ["--task", "countdown"])) == PretrainConfig(
        task="countdown")


def test_simulate_old_spellings_parse_to_the_same_config():
    old = ["--world", "tabular_lm", "--rule", "grpo", "--objective", "clip_higher", "--objective-arg",
           "eps_high=0.3", "--loss-agg", "seq-mean-token-mean", "--epochs", "2", "--samples", "4",
           "--adv-norm", "mean", "--out", "x"]
    new = ["--world", "tabular_lm", "--rule", "grpo", "--objective", "clip_higher", "--objective-param",
           "eps_high=0.3", "--loss-agg-mode", "seq-mean-token-mean", "--ppo-epochs", "2", "--group-size", "4",
           "--advantage", "drgrpo", "--out", "x"]
    a, b = sim_cli.config_from_args(_parse(sim_cli, old)), sim_cli.config_from_args(_parse(sim_cli, new))
    assert a == b
    assert a.objective_kwargs == {"eps_high": 0.3} and a.loss_agg == "seq-mean-token-mean"
    assert a.epochs == 2 and a.samples == 4 and a != SimConfig(world="tabular_lm", rule="grpo")


def test_train_and_eval_old_spellings_parse_to_the_same_config(tmp_path):
    base = ["--task", "arithmetic", "--model", str(tmp_path), "--out", "x", "--objective", "kl_cov"]
    old = [*base, "--param", "kl_ratio=0.002", "--agg-mode", "seq-mean-token-sum", "--minibatches", "2"]
    new = [*base, "--objective-param", "kl_ratio=0.002", "--loss-agg-mode", "seq-mean-token-sum",
           "--num-minibatches", "2"]
    a = train_cli.build_config(_parse(train_cli, old))
    assert a == train_cli.build_config(_parse(train_cli, new))
    assert a.objective.params == {"kl_ratio": 0.002} and a.objective.agg_mode == "seq-mean-token-sum"
    assert a.optim.num_minibatches == 2
    ev_old = _parse(eval_cli, ["--model", "m", "--samples", "2", "--temperature", "0.5"])
    ev_new = _parse(eval_cli, ["--model", "m", "--val-samples", "2", "--val-temperature", "0.5"])
    assert vars(ev_old) == vars(ev_new) and ev_new.val_samples == 2 and ev_new.val_temperature == 0.5


def test_every_kind_of_field_parses(tmp_path):
    cfg = train_cli.build_config(_parse(train_cli, [
        "--task", "arithmetic", "--model", str(tmp_path), "--out", "x", "--no-dynamic-sampling",
        "--betas", "0.8", "0.95", "--rollout-temperature", "0.7", "--knob", "max_operand=5", "--tensorboard",
        "--max-new-tokens", "9", "--val-temperature", "0.3", "--grad-clip", "0"]))
    assert cfg.rollout.dynamic_sampling is False and cfg.optim.betas == (0.8, 0.95)
    assert cfg.rollout.temperature == 0.7 and cfg.data.task_knobs == {"max_operand": 5} and cfg.tensorboard
    assert cfg.rollout.max_new_tokens == 9 and cfg.val_temperature == 0.3 and cfg.optim.grad_clip == 0.0
    sim = sim_cli.config_from_args(_parse(sim_cli, ["--match-threshold", "none", "--horizon", "5",
                                                    "--record-logits", "--out", "x"]))
    assert sim.match_threshold == 3 and sim.record_logits
    pre = pretrain_cli.config_from_args(_parse(pretrain_cli, ["--task", "arithmetic", "--wrong-frac", "0.1",
                                                              "--model-size", "hidden_size=32"]))
    assert pre.wrong_frac == 0.1 and pre.model_sizes == {"hidden_size": 32}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_simulate_config_round_trip(tmp_path, fmt):
    run = tmp_path / "run"
    assert main(["simulate", "--world", "tabular_lm", "--rule", "grpo", "--objective", "kl_cov",
                 "--objective-param", "kl_ratio=0.05", "--steps", "2", "--vocab", "3", "--horizon", "2",
                 "--group-size", "4", "--optimizer", "adam", "--lr", "0.05", "--no-progress",
                 "--out", str(run)]) == 0
    saved = load_run(run).config
    path = run / "config.json"
    if fmt == "yaml":
        path = _write(tmp_path / "sim.yaml", json.loads(path.read_text()), "yaml")
    assert sim_cli.config_from_args(_parse(sim_cli, ["--config", str(path), "--out", "y"])) == saved
    # the bare config (no environment wrapper) loads too
    bare = _write(tmp_path / f"bare.{fmt}", saved.to_dict(), fmt)
    assert sim_cli.config_from_args(_parse(sim_cli, ["--config", str(bare), "--out", "y"])) == saved


def _train_config(tmp_path):
    return TrainConfig(steps=7, seed=3, model=str(tmp_path / "model"), val_every=2, val_temperature=0.5,
                       tensorboard=True, data=DataConfig(task="countdown", n_train=64, n_val=8),
                       rollout=RolloutConfig(prompts_per_step=4, group_size=3, dynamic_sampling=False),
                       objective=ObjectiveConfig(name="kl_cov", params={"kl_ratio": 0.002},
                                                 advantage="drgrpo", agg_mode="seq-mean-token-sum-norm"),
                       optim=OptimConfig(lr=1e-4, betas=(0.8, 0.9), num_minibatches=2))


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_train_config_round_trip(tmp_path, fmt):
    cfg = _train_config(tmp_path)
    # what the Trainer writes: the config plus the run facts, wrapped with the environment
    path = save_run_config(tmp_path, {**cfg.to_dict(), "objective_resolved": "kl_cov", "world_size": 1})
    if fmt == "yaml":
        path = _write(tmp_path / "train.yaml", json.loads(path.read_text()), "yaml")
    loaded = train_cli.build_config(_parse(train_cli, ["--config", str(path), "--out", "x"]))
    assert loaded == cfg
    bare = _write(tmp_path / f"bare.{fmt}", cfg.to_dict(), fmt)
    assert train_cli.build_config(_parse(train_cli, ["--config", str(bare), "--out", "x"])) == cfg


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_pretrain_config_round_trip(tmp_path, fmt):
    cfg = PretrainConfig(task="countdown", steps=5, n_train=64, n_val=8, model_sizes={"hidden_size": 32},
                         lr=1e-3)
    # the cached warm start's pretrain.json, and a run-folder config.json
    path = atomic_write_json(tmp_path / "pretrain.json", {"config": cfg, "digest": cfg.digest(), "val": {},
                                                          "environment": environment_info()})
    other = save_run_config(tmp_path, cfg)
    for p in (path, other):
        if fmt == "yaml":
            p = _write(tmp_path / "pre.yaml", json.loads(p.read_text()), "yaml")
        loaded = pretrain_cli.config_from_args(_parse(pretrain_cli, ["--config", str(p)]))
        assert loaded == cfg and loaded.digest() == cfg.digest()


def test_command_line_beats_file_beats_defaults(tmp_path):
    cfg = _train_config(tmp_path)
    path = save_run_config(tmp_path, cfg)
    args = ["--config", str(path), "--out", "x", "--steps", "9", "--lr", "0.001", "--knob", "max_target=50",
            "--objective-param", "kl_coef=2.0", "--dynamic-sampling"]
    got = train_cli.build_config(_parse(train_cli, args))
    assert got.steps == 9 and got.optim.lr == 0.001 and got.rollout.dynamic_sampling is True
    assert got.seed == 3 and got.optim.betas == (0.8, 0.9) and got.data.task == "countdown"  # from the file
    assert got.objective.params == {"kl_ratio": 0.002, "kl_coef": 2.0}  # dict fields merge key by key
    assert got.data.task_knobs == {"max_target": 50}
    assert got.optim.weight_decay == OptimConfig().weight_decay  # in neither: the default
    sim_file = _write(tmp_path / "sim.yaml", {"world": "mdp", "lr": "1e-3", "steps": 4}, "yaml")
    sim = sim_cli.config_from_args(_parse(sim_cli, ["--config", str(sim_file), "--steps", "6", "--out", "x"]))
    assert (sim.world, sim.lr, sim.steps, sim.seed) == ("mdp", 1e-3, 6, 0)
    pre_file = _write(tmp_path / "pre.json", {"task": "countdown", "steps": 11, "seed": 4}, "json")
    pre = pretrain_cli.config_from_args(_parse(pretrain_cli, ["--config", str(pre_file), "--seed", "5"]))
    assert (pre.task, pre.steps, pre.seed) == ("countdown", 11, 5)


def test_unknown_config_keys_are_errors_naming_them(tmp_path, capsys):
    bad = _write(tmp_path / "bad.json", {"optim": {"lrr": 0.1}}, "json")
    with pytest.raises(ValueError, match=r"unknown key 'optim\.lrr'.*valid keys of optim: optimizer, lr"):
        train_cli.build_config(_parse(train_cli, ["--config", str(bad), "--task", "arithmetic",
                                                  "--out", "x"]))
    assert main(["train", "--config", str(bad), "--task", "arithmetic", "--out", str(tmp_path / "r")]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    bad_sim = _write(tmp_path / "bad.yaml", {"wrold": "mdp"}, "yaml")
    assert main(["simulate", "--config", str(bad_sim), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "'wrold'" in err and "world" in err and not (tmp_path / "s").exists()
    bad_pre = _write(tmp_path / "bad_pre.json", {"task": "arithmetic", "stepz": 3}, "json")
    assert main(["pretrain", "--config", str(bad_pre)]) == 2
    assert "'stepz'" in capsys.readouterr().err
    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        sim_cli.config_from_args(_parse(sim_cli, ["--config", str(not_a_mapping), "--out", "x"]))


def test_simulate_config_saved_before_the_advantage_rename_loads(tmp_path):
    old = _write(tmp_path / "old.json", {"config": {"rule": "grpo", "adv_norm": "mean"}, "environment": {}},
                 "json")
    from_file = sim_cli.config_from_args(_parse(sim_cli, ["--config", str(old), "--out", "x"]))
    assert from_file == sim_cli.config_from_args(_parse(sim_cli, ["--rule", "grpo", "--advantage", "drgrpo",
                                                                 "--out", "x"]))


def test_task_still_required_without_a_config(tmp_path, capsys):
    assert main(["pretrain"]) == 2
    assert "--task is required" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    assert "--task is required" in capsys.readouterr().err
