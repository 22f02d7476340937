"""``run --restore-only`` (``LORA_AGNEWS_RESTORE_ONLY=1``): the published books are made from the archive, and a
run that would train stops the build with one line naming it, before its Trainer starts and before anything is
written for it. Reuse of a complete run is untouched (tested on a real smoke run)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from lora_agnews import cli, pipeline
from lora_agnews.core import config, paths, runs
from lora_agnews.core.runs import RunError


@pytest.fixture
def restore_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runs.RESTORE_ONLY_ENV, "1")


def test_the_switch_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load("smoke")
    for value, on in (("", False), ("0", False), ("1", True), ("true", True), ("YES", True)):
        monkeypatch.setenv(runs.RESTORE_ONLY_ENV, value)
        assert runs.restore_only() is on
    monkeypatch.delenv(runs.RESTORE_ONLY_ENV)
    runs.refuse_training(paths.runs_dir("smoke") / "main", cfg)  # off: nothing happens


def test_a_new_run_is_refused_before_anything_is_written(restore_only: None) -> None:
    from lora_agnews.core.train import train_owned

    run_dir = paths.runs_dir("smoke") / "seeds" / "seed42"
    with pytest.raises(RunError) as caught:
        train_owned(config.load("smoke"), run_dir)
    message = str(caught.value)
    assert message.startswith(runs.RESTORE_ONLY) and "\n" not in message
    assert "results/smoke/runs/seeds/seed42" in message
    assert "archive/smoke" in message and "without --restore-only" in message
    assert not (run_dir / runs.RUN_FILE).exists(), "a refusal leaves no run record behind"


def test_study_models_trained_through_fit_are_refused(restore_only: None, tmp_path: Path) -> None:
    """The merging study's head-only and multi-task models call fit directly, past train's checks."""
    from lora_agnews.core.trainer import fit

    with pytest.raises(RunError, match="restore-only"):
        fit(SimpleNamespace(cfg=config.load("smoke")), tmp_path / "head_only")


@pytest.mark.slow
def test_a_complete_run_is_still_reused(train_smoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_agnews.core.train import train

    run_dir = train_smoke(tmp_path)
    monkeypatch.setenv(runs.RESTORE_ONLY_ENV, "1")
    monkeypatch.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORA_AGNEWS_CACHE", str(tmp_path / "cache"))
    metrics = train(config.load("smoke", {"epochs": 1}), run_dir)  # the run train_smoke made
    assert metrics == runs.load_complete(run_dir)


def test_the_pipeline_shows_a_refusal_as_one_line() -> None:
    refusal = (f"{runs.RESTORE_ONLY} results/cpu/runs/quantization/nf4/seed42 is neither in archive/cpu nor "
               f"complete in results/, and ...")
    from_kernel = SimpleNamespace(evalue=refusal)
    from_subprocess = SimpleNamespace(evalue=f"the quantization study's run X failed (exit 2):\nerror: {refusal}\n"
                                             f"Rerun it alone with: python -m lora_agnews train ...")
    for exc in (from_kernel, from_subprocess):
        assert pipeline._restore_only_refusal("06_quantization", exc) == f"notebook 06_quantization: {refusal}"
    assert pipeline._restore_only_refusal("02_training", SimpleNamespace(evalue="CUDA out of memory")) == ""


def test_run_sets_the_switch_for_its_kernels_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(pipeline, "_run", lambda *args: seen.append(os.environ.get(runs.RESTORE_ONLY_ENV)) or {})
    monkeypatch.delenv(runs.RESTORE_ONLY_ENV, raising=False)
    assert cli.main(["run", "--profile", "smoke", "--restore-only"]) == 0
    assert cli.main(["run", "--profile", "smoke"]) == 0
    assert seen == ["1", None] and runs.RESTORE_ONLY_ENV not in os.environ


@pytest.mark.pipeline
def test_restore_only_stops_the_smoke_pipeline_at_its_first_training(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Nothing archived for smoke here: notebook 02 would train the main run; the pipeline stops there."""
    monkeypatch.delenv(runs.RESTORE_ONLY_ENV, raising=False)  # the CLI flag alone must reach the kernel
    assert cli.main(["run", "--profile", "smoke", "--steps", "notebooks", "--restore-only"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: notebook 02_training: restore-only: ") and "results/smoke/runs/main" in err
    assert not paths.stamp_path("smoke").exists()
