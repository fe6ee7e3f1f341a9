"""Tracking backends (llm_rl.tracking): TensorBoard scalars + hparams and an offline Weights & Biases run
carry the same metric names as metrics.jsonl; the null backend and the config field."""

from __future__ import annotations

import sys

import pytest

from llm_rl.config import TrainConfig
from llm_rl.metrics import MetricsWriter
from llm_rl.tracking import TrackingBackend, flatten_config, open_backends
from rundir.records import read_records
from test_llm_trainer import make_config, tiny_model  # noqa: F401  (tiny_model: a fixture)


class Recorder(TrackingBackend):
    """A backend that remembers what it was given."""

    name = "recorder"

    def __init__(self):
        self.configs, self.logged, self.closed = [], [], False

    def log_config(self, config):
        self.configs.append(dict(config))

    def log(self, values, step):
        self.logged.append((step, dict(values)))

    def close(self):
        self.closed = True


def jsonl_keys(path) -> set[str]:
    """Keys with a value (not null) in any line, ``step`` excluded."""
    return {k for rec in read_records(path) for k, v in rec.items() if k != "step" and v is not None}


def test_writer_gives_every_backend_the_jsonl_record(tmp_path):
    null, rec = TrackingBackend(), Recorder()
    w = MetricsWriter(tmp_path / "m.jsonl", backends=[null, rec])
    w.log_config({"steps": 2})
    w.write({"step": 0, "entropy/train": 0.5, "reward/mean": float("nan"), "optim/updates": 3})
    w.close()
    assert rec.configs == [{"steps": 2}] and rec.closed
    assert rec.logged == [(0, {"entropy/train": 0.5, "optim/updates": 3})]  # the NaN is null in the JSONL
    assert jsonl_keys(tmp_path / "m.jsonl") == set(rec.logged[0][1])
    with pytest.raises(ValueError, match="undocumented"):
        w.write({"step": 1, "not/a_metric": 1.0})


def test_flatten_config():
    flat = flatten_config({"optim": {"lr": 1e-4, "betas": (0.9, 0.99)}, "report_to": ["wandb"], "seed": 0,
                           "objective": {"params": {}}, "model": "", "x": None})
    assert flat == {"optim.lr": 1e-4, "optim.betas": "[0.9, 0.99]", "report_to": '["wandb"]', "seed": 0,
                    "objective.params": "{}", "model": "", "x": "null"}
    with pytest.raises(ValueError, match="mapping"):
        flatten_config([("a", 1)])
    with pytest.raises(ValueError, match="keys must be strings"):
        flatten_config({1: 2})


def test_report_to_is_validated(tmp_path):
    assert TrainConfig(report_to=["wandb", "tensorboard", "wandb"]).report_to == ("wandb", "tensorboard")
    assert TrainConfig.from_dict(TrainConfig(report_to=["wandb"]).to_dict()).report_to == ("wandb",)
    for bad in ("wandb", ("mlflow",)):
        with pytest.raises(ValueError, match="report_to"):
            TrainConfig(report_to=bad)
    with pytest.raises(ValueError, match="unknown tracking backend"):
        open_backends(tmp_path, ["mlflow"])
    assert open_backends(tmp_path, []) == []


def _tensorboard_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
               for k, v in data.session_start_info.hparams.items()}
    return set(acc.Tags()["scalars"]), hparams


def test_tensorboard_scalars_and_hparams_match_the_jsonl(tiny_model, tmp_path):  # noqa: F811
    pytest.importorskip("tensorboard")
    from llm_rl.trainer import Trainer

    cfg = make_config(tiny_model, steps=2, val_every=1, report_to=("tensorboard",))
    Trainer(cfg, tmp_path / "run", progress=False).train()
    tags, hparams = _tensorboard_events(tmp_path / "run" / "tensorboard")
    assert tags == jsonl_keys(tmp_path / "run" / "metrics.jsonl")
    flat = flatten_config({**cfg.to_dict(), "objective_resolved": "ppo_clip", "world_size": 1})
    assert set(hparams) == set(flat)
    assert hparams["optim.lr"] == pytest.approx(cfg.optim.lr) and hparams["objective_resolved"] == "ppo_clip"
    assert hparams["report_to"] == '["tensorboard"]'


def test_wandb_offline_run_logs_the_jsonl_keys(tiny_model, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("wandb")
    from wandb.sdk.wandb_run import Run as run_cls
    from llm_rl.trainer import Trainer

    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true",
                       "WANDB_PROJECT": "entropy-mech-test", "WANDB_CONSOLE": "off"}.items():
        monkeypatch.setenv(key, value)
    calls, configs = [], []
    real_log = run_cls.log

    def spy_log(self, data, *args, **kwargs):  # records, then logs for real (into the offline run)
        calls.append((kwargs.get("step"), dict(data)))
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(run_cls, "log", spy_log)
    cfg = make_config(tiny_model, steps=2, val_every=1, report_to=("wandb",))
    out = tmp_path / "run"
    trainer = Trainer(cfg, out, progress=False)
    configs.append(dict(trainer.writer.backends[0].run.config))
    trainer.train()

    records = read_records(out / "metrics.jsonl")
    assert [step for step, _ in calls] == [r["step"] for r in records]
    assert set().union(*(set(d) for _, d in calls)) == jsonl_keys(out / "metrics.jsonl")
    for (_, data), rec in zip(calls, records):
        assert data == {k: v for k, v in rec.items() if k != "step" and v is not None}
    assert configs[0]["optim"]["lr"] == cfg.optim.lr and configs[0]["report_to"] == ["wandb"]
    # the offline run on disk: one run folder under WANDB_DIR whose .wandb file holds every key
    runs = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    blob = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    missing = [k for k in jsonl_keys(out / "metrics.jsonl") if k.encode() not in blob]
    assert not missing, f"keys absent from the offline .wandb file: {missing}"
    run_id = (out / "wandb_run_id").read_text().strip()
    assert runs[0].name.endswith(run_id)


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ValueError, match="pip install wandb"):
        open_backends(tmp_path, ["wandb"])
