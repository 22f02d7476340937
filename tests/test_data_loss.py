"""No data lost, ever: --overwrite replaces only what the project wrote, a run directory is locked while a
process trains into it, a changed configuration moves a pipeline-owned run aside instead of deleting it,
edited data is never reused, and commands that change a profile's results retire its stamp."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lora_agnews.core import config, paths, runs
from lora_agnews import pipeline
from lora_agnews.core.paths import write_json
from lora_agnews.cli import main

SHORT = ["-p", "epochs", "1", "-p", "max_train_samples", "64", "-p", "max_val_samples", "32",
         "-p", "max_eval_samples", "32"]
SHORT_VALUES = {"epochs": 1, "max_train_samples": 64, "max_val_samples": 32, "max_eval_samples": 32}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def fake_run(run_dir: Path, cfg: config.Config) -> Path:
    """A complete run record and metrics, as training leaves them (keyed by the real run key)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json({"status": "complete", "config": cfg.to_dict(), "run_key": runs.run_key(cfg)}, run_dir / runs.RUN_FILE)
    write_json({"accuracy": 0.5, "macro_f1": 0.5, "trainable_params": 1}, run_dir / runs.METRICS_FILE)
    return run_dir


# --------------------------------------------------------------------------- --overwrite
def test_overwrite_never_deletes_a_directory_without_a_run_record(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("hours of notes")
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):
        assert main(["train", "--profile", "smoke", *SHORT, "--out", str(out), *extra]) == 2
        err = one_error(capsys)
        assert "holds no run record" in err and "notes.txt" in err and "choose another --out" in err
        assert snapshot(out) == before


def test_overwrite_refuses_a_run_beside_files_training_did_not_write(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = fake_run(tmp_path / "run", config.load("smoke", SHORT_VALUES))
    (out / "analysis.ipynb").write_text("{}")
    before = snapshot(out)
    assert main(["train", "--profile", "smoke", *SHORT, "-p", "lora_r", "4", "--out", str(out), "--overwrite"]) == 2
    err = one_error(capsys)
    assert "analysis.ipynb" in err and "choose another --out" in err
    assert snapshot(out) == before


def test_overwrite_replaces_a_run_the_project_wrote_and_keeps_the_lock(tmp_path: Path) -> None:
    cfg = config.load("smoke")
    run_dir = fake_run(tmp_path / "run", cfg)
    (run_dir / runs.CHECKPOINTS / "checkpoint-6").mkdir(parents=True)
    (run_dir / ".metrics.json.x1y2.tmp").write_text("")  # a cut-off atomic write: training's own
    with runs.RunLock(run_dir):
        assert runs.check(run_dir, cfg.replace(lora_r=4), overwrite=True) == "replace"
        assert runs.claim(run_dir, "replace") == "new"
        assert [p.name for p in run_dir.iterdir()] == [runs.LOCK_FILE]
    assert run_dir.is_dir() and not any(run_dir.iterdir())


# --------------------------------------------------------------------------- the lock
HOLDER = ("import sys, time\n"
          "from lora_agnews.core.runs import RunLock\n"
          "RunLock(sys.argv[1]).acquire()\n"
          "print('locked', flush=True)\n"
          "time.sleep(120)\n")


def test_a_second_process_is_refused_and_a_killed_holder_blocks_nothing(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = fake_run(tmp_path / "run", config.load("smoke", SHORT_VALUES))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        assert main(["train", "--profile", "smoke", *SHORT, "--out", str(out)]) == 2
        err = one_error(capsys)
        assert f"locked by process {holder.pid}" in err and "choose another --out" in err
        assert snapshot(out) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (out / runs.LOCK_FILE).is_file()  # the killed holder's file stays; its lock went with it
    assert main(["train", "--profile", "smoke", *SHORT, "--out", str(out)]) == 0  # reuses the run at once
    assert "reusing it" in capsys.readouterr().err
    assert not (out / runs.LOCK_FILE).exists()


def test_the_same_directory_cannot_be_locked_twice(tmp_path: Path) -> None:
    run_dir = tmp_path / "new" / "run"
    with runs.RunLock(run_dir):
        assert read_json_pid(run_dir) == os.getpid()
        with pytest.raises(runs.RunError, match=f"locked by process {os.getpid()}"):
            runs.RunLock(run_dir).acquire()
    assert not (tmp_path / "new").exists(), "directories the lock created are removed with it when left empty"


def read_json_pid(run_dir: Path) -> int:
    return int((run_dir / runs.LOCK_FILE).read_text().split()[0])


# --------------------------------------------------------------------------- changed configuration
def test_a_changed_configuration_moves_the_pipeline_run_aside(capsys: pytest.CaptureFixture[str]) -> None:
    from lora_agnews.core.train import train_owned

    cfg = config.load("smoke", SHORT_VALUES)
    run_dir = paths.runs_dir("smoke") / "main"
    train_owned(cfg, run_dir)
    old = snapshot(run_dir)
    capsys.readouterr()
    train_owned(cfg.replace(lora_r=4), run_dir)
    moved = [line for line in capsys.readouterr().err.splitlines() if "moved it to" in line]
    assert len(moved) == 1
    kept = paths.superseded_dir(run_dir, runs.key_tag(runs.run_key(cfg)))
    assert str(kept) in moved[0]
    assert snapshot(kept) == old, "the earlier run is kept byte for byte"
    assert runs.read_record(run_dir)["config"]["lora_r"] == 4
    assert [i.path for i in runs.scan(paths.runs_dir("smoke"))] == [run_dir], "readers never see the kept run"


def test_a_run_set_aside_twice_never_overwrites_the_first(tmp_path: Path) -> None:
    cfg = config.load("smoke")
    first = runs.set_aside(fake_run(tmp_path / "run", cfg), runs.run_key(cfg))
    second = runs.set_aside(fake_run(tmp_path / "run", cfg), runs.run_key(cfg))
    assert first != second and (first / runs.RUN_FILE).is_file() and (second / runs.RUN_FILE).is_file()


# --------------------------------------------------------------------------- the data's content
def test_an_edited_csv_is_not_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(paths.SAMPLE_DATA, data)
    out = tmp_path / "run"
    args = ["train", "--profile", "smoke", *SHORT, "-p", "data", str(data), "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0 and "reusing it" in capsys.readouterr().err
    train_csv = data / "train.csv"
    train_csv.write_text(train_csv.read_text().replace("a", "e", 1))
    before = snapshot(out)
    assert main(args) == 2
    assert "differs in: data_sha256" in one_error(capsys)
    assert snapshot(out) == before
    cfg = config.load("smoke", {**SHORT_VALUES, "data": str(data)})
    assert runs.check(out, cfg, owned=True) == "aside"


def test_runs_recorded_before_data_fingerprints_are_still_reused(tmp_path: Path) -> None:
    cfg = config.load("smoke")
    run_dir = fake_run(tmp_path / "run", cfg)
    write_json({**runs.read_record(run_dir), "run_key": cfg.run_key()}, run_dir / runs.RUN_FILE)
    assert runs.check(run_dir, cfg) == "complete"
    with pytest.raises(runs.RunError, match=r"differs in: lora_r\)"):
        runs.check(run_dir, cfg.replace(lora_r=4))


# --------------------------------------------------------------------------- the results stamp
TINY_GRID = [*SHORT, "-p", "ablation_ranks", "2", "-p", "ablation_targets", "query,value,word_embeddings",
             "-p", "ablation_heads", "default", "-p", "ablation_epochs", "1", "-p", "lr_candidates", ""]


@pytest.mark.parametrize("command, extra", [
    ("ablate", TINY_GRID),
    ("seeds", [*SHORT, "-p", "n_seeds", "1", "-p", "study_top", "0"]),
])
def test_commands_that_change_results_retire_the_stamp(command: str, extra: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    stamp = pipeline.stamp_path("smoke")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_json({"profile": "smoke", "results_format": pipeline.RESULTS_FORMAT, "finished": "2026-01-01"}, stamp)
    assert main([command, "--profile", "smoke", *extra]) == 0
    assert not stamp.exists()
    capsys.readouterr()
    assert main(["run", "--profile", "smoke", "--steps", "book"]) == 1
    assert "no complete results" in capsys.readouterr().err
