"""Experiment tracking (``report_to``): the Trainer's own integrations, TensorBoard pinned and read back.

One smoke run with ``report_to tensorboard`` for the module (2 epochs, one evaluation each), then the
same run interrupted after its first checkpoint and resumed: the event files must hold the training
loss and the validation accuracy, once per step, whatever the resume repeated.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import outputs_under
from lora_agnews.core import config, runs, train, trainer
from lora_agnews.core.paths import read_json
from lora_agnews.core.config import ConfigError


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in ``log_dir``'s event files, as TensorBoard's own reader sees them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tracked")
    with outputs_under(root):  # the autouse isolation fixture is per test; this run is per module
        cfg = config.load("smoke", {"epochs": 2, "max_train_samples": 192, "report_to": "tensorboard"})
        out = root / "run"
        metrics = train.train(cfg, out)
    history = read_json(out / "history.json")
    return SimpleNamespace(cfg=cfg, out=out, root=root, metrics=metrics, history=history,
                           events=scalars(out / runs.TENSORBOARD_DIR))


# --------------------------------------------------------------------------- the key
def test_default_is_off_and_names_reach_the_trainer(smoke_config: config.Config) -> None:
    import torch

    assert config.Config().report_to == "none" and smoke_config.report_targets == []
    args = trainer.training_arguments(smoke_config, Path("unused"), 64, torch.device("cpu"), "fp32")
    assert args.report_to == []  # today's behaviour: no integration at all
    cfg = smoke_config.replace(report_to=" tensorboard, wandb ,tensorboard")  # as -p / papermill pass it
    assert cfg.report_targets == ["tensorboard", "wandb"]
    args = trainer.training_arguments(cfg.replace(report_to="tensorboard"), Path("unused"), 64, torch.device("cpu"), "fp32")
    assert args.report_to == ["tensorboard"]
    assert config.from_dict({"report_to": "all"}).report_targets == ["all"]


def test_unknown_integration_lists_the_trainers_own(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    with pytest.raises(ConfigError) as info:
        config.load("smoke", {"report_to": "tensorboard,tensorbord"})
    msg = str(info.value)
    assert "'report_to'" in msg and "'tensorbord'" in msg and "Did you mean 'tensorboard'" in msg
    assert all(name in msg for name in INTEGRATION_TO_CALLBACK) and "\n" not in msg
    # on the command line: one line, and nothing written
    from lora_agnews.cli import main

    out = tmp_path / "run"
    assert main(["train", "--profile", "smoke", "-p", "report_to", "nosuch", "--out", str(out)]) != 0
    assert "nosuch" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("value, match", [("", "is empty"), ("none,tensorboard", "'none' stands alone"),
                                          ("tensorboard,all", "'all' stands alone")])
def test_malformed_lists_are_refused(value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config.load("smoke", {"report_to": value})


@pytest.mark.parametrize("name, install", [("wandb", "pip install wandb"), ("comet_ml", "pip install comet-ml"),
                                           ("dagshub", "pip install dagshub mlflow")])
def test_known_integration_without_its_package_names_it_before_anything_is_written(
        name: str, install: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    cfg = config.load("smoke", {"report_to": f"tensorboard,{name}"})  # a recorded config still loads ...
    with pytest.raises(ConfigError, match=f"names {name}, whose package is not installed: {install} "):
        train.train(cfg, tmp_path / "run")  # ... but training it is refused
    assert not (tmp_path / "run").exists()


def test_kubeflow_outside_a_trainjob_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEFLOW_TRAINER_SERVER_URL", raising=False)
    with pytest.raises(ConfigError, match="Kubeflow TrainJob"):
        config.require_trackers(config.load("smoke", {"report_to": "kubeflow"}))


def test_tracking_is_not_part_of_a_runs_identity(smoke_config: config.Config) -> None:
    key = smoke_config.run_key()
    assert "report_to" not in key and smoke_config.replace(report_to="tensorboard,wandb").run_key() == key


# --------------------------------------------------------------------------- TensorBoard
def test_event_files_hold_training_loss_and_validation_accuracy(tracked: SimpleNamespace) -> None:
    log_dir = tracked.out / runs.TENSORBOARD_DIR
    assert list(log_dir.glob("events.out.tfevents.*"))
    assert {"train/loss", "eval/accuracy"} <= set(tracked.events)
    want_acc = [(h["step"], h["eval_accuracy"]) for h in tracked.history if "eval_accuracy" in h]
    want_loss = [(h["step"], h["loss"]) for h in tracked.history if "loss" in h]
    assert len(want_acc) == 2 and len(want_loss) > 2  # one evaluation per epoch; loss every few steps
    assert [s for s, _ in tracked.events["eval/accuracy"]] == [s for s, _ in want_acc]
    assert [v for _, v in tracked.events["eval/accuracy"]] == pytest.approx([v for _, v in want_acc])
    assert [s for s, _ in tracked.events["train/loss"]] == [s for s, _ in want_loss]
    assert [v for _, v in tracked.events["train/loss"]] == pytest.approx([v for _, v in want_loss], rel=1e-5)
    assert not (tracked.out / runs.CHECKPOINTS / "runs").exists()  # not the Trainer's timestamped default


def test_turning_tracking_off_reuses_the_complete_run(tracked: SimpleNamespace) -> None:
    untracked = tracked.cfg.replace(report_to="none")
    assert runs.check(tracked.out, untracked) == "complete"
    before = (tracked.out / runs.METRICS_FILE).stat().st_mtime_ns
    assert train.train(untracked, tracked.out)["accuracy"] == tracked.metrics["accuracy"]
    assert (tracked.out / runs.METRICS_FILE).stat().st_mtime_ns == before


def test_resumed_run_logs_each_step_once(tracked: SimpleNamespace) -> None:
    """Killed after the first epoch's checkpoint with the second epoch already logged: the resume relogs
    epoch 2, and the purge marker makes the reader drop the interrupted attempt's copy."""
    out = tracked.out
    checkpoints = sorted((out / runs.CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    shutil.rmtree(checkpoints[-1])
    for name in (runs.METRICS_FILE, "test_predictions.npz", "history.json"):
        (out / name).unlink()
    shutil.rmtree(out / "adapter")
    record = runs.read_record(out)
    record.update(status="running", pid=2 ** 22 + 4321, finished=None)  # what a SIGKILL leaves
    runs.write_record(out, record)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("RESULTS", "BUILD", "CACHE"):
            mp.setenv(f"LORA_AGNEWS_{name}", str(tracked.root / name.lower()))
        assert runs.check(out, tracked.cfg) == "resume"
        metrics = train.train(tracked.cfg, out)
    assert runs.read_record(out)["attempts"] == 2 and metrics["accuracy"] == tracked.metrics["accuracy"]
    assert len(list((out / runs.TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2  # one per attempt
    events = scalars(out / runs.TENSORBOARD_DIR)
    for tag in ("train/loss", "eval/accuracy"):
        assert [s for s, _ in events[tag]] == [s for s, _ in tracked.events[tag]], tag
    assert [v for _, v in events["eval/accuracy"]] == pytest.approx([v for _, v in tracked.events["eval/accuracy"]])
