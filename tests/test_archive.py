"""The archive of complete runs: what an entry holds, restore by identity instead of training, stale entries refused
and listed, bad input refused in one line before anything is written, nothing the project did not write touched.

Fast: the runs are records written the way training leaves them (no model is trained here); the pipeline's
compute -> archive -> wipe -> restore -> render check on the smoke profile is in test_pipeline.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lora_agnews import pipeline
from lora_agnews.cli import main
from lora_agnews.core import archive, config, hardware, paths, restore, runs, train as train_mod
from lora_agnews.core.paths import read_json, write_json
from lora_agnews.reporting import audit_text
from lora_agnews.studies import audit, verify

SHORT = {"epochs": 1, "max_train_samples": 64, "max_val_samples": 32, "max_eval_samples": 32}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def complete_run(run_dir: Path, cfg: config.Config, adapter: bool = True) -> Path:
    """A complete run as training leaves it: record, metrics, history, exact fp32 test logits, adapter, checkpoints."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.lora_r)
    runs.save_arrays(run_dir / "test_predictions.npz", logits=rng.normal(size=(32, 4)).astype(np.float32),
                     labels=rng.integers(0, 4, 32))
    write_json({"accuracy": 0.5, "macro_f1": 0.5, "trainable_params": 1}, run_dir / runs.METRICS_FILE)
    write_json([{"loss": 1.0, "step": 1}], run_dir / "history.json")
    if adapter:
        (run_dir / "adapter").mkdir()
        (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
        write_json({"config": cfg.to_dict()}, run_dir / "adapter" / "lora_agnews_config.json")
    (run_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-1" / "model.safetensors").write_bytes(b"a whole model")
    record = runs.start(run_dir, cfg, "cpu")
    runs.finish(run_dir, record)
    return run_dir


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training raises: a test that passes restored its runs rather than trained them."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained, though the archive holds this run")

    monkeypatch.setattr(train_mod, "_train_and_score", refuse)


def main_config(**changes: object) -> config.Config:
    return config.load("smoke", {**SHORT, **changes})


def archived_profile() -> tuple[config.Config, config.Config]:
    """results/smoke with a main run (adapter kept) and an ablation run (archived without its adapter), archived."""
    cfg, other = main_config(), main_config(lora_r=2)
    complete_run(paths.runs_dir("smoke") / "main", cfg)
    complete_run(paths.runs_dir("smoke") / "ablation" / "r2", other)
    archive.archive_profile("smoke")
    return cfg, other


# --------------------------------------------------------------------------- what is archived
def test_an_entry_holds_the_record_logits_and_only_the_main_adapter_never_checkpoints() -> None:
    cfg, other = archived_profile()
    root = paths.archive_dir("smoke")
    manifest = read_json(root / archive.MANIFEST)
    assert manifest["written_by"] == archive.WRITER and len(manifest["entries"]) == 2
    main_entry = root / archive.ENTRIES / archive.entry_id(runs.run_key(cfg), "runs/main")
    info = read_json(main_entry / archive.ENTRY_FILE)
    assert info["identity"] == archive.identity(runs.run_key(cfg)) and info["adapter"]
    assert info[runs.DATA_KEY] == runs.run_key(cfg)[runs.DATA_KEY] and info["run_format"] == paths.RUN_FORMAT
    assert info["computed"]["machine"]["cpu_kind"] == hardware.machine()["cpu_kind"] and info["computed"]["versions"]
    assert "adapter/adapter_model.safetensors" in info["files"] and not any("checkpoint" in f for f in info["files"])
    source = paths.runs_dir("smoke") / "main" / "test_predictions.npz"
    assert (main_entry / "test_predictions.npz").read_bytes() == source.read_bytes()  # logits stored exactly
    ablation = root / archive.ENTRIES / archive.entry_id(runs.run_key(other), "runs/ablation/r2")
    assert not (ablation / "adapter").exists() and (ablation / "test_predictions.npz").is_file()


def test_archiving_again_adds_new_runs_and_never_rewrites_an_entry() -> None:
    cfg, _ = archived_profile()
    before = snapshot(paths.archive_dir("smoke") / archive.ENTRIES)
    complete_run(paths.runs_dir("smoke") / "seeds" / "seed43", main_config(seed=43), adapter=False)
    done = archive.archive_profile("smoke")
    assert done["added"] == 1 and done["entries"] == 3
    after = snapshot(paths.archive_dir("smoke") / archive.ENTRIES)
    assert {k: after[k] for k in before} == before


# --------------------------------------------------------------------------- restore, stale
def test_a_wiped_profile_is_restored_instead_of_trained_and_says_so(no_training: None) -> None:
    cfg, other = archived_profile()
    original = snapshot(paths.runs_dir("smoke") / "main")
    shutil.rmtree(paths.results_dir("smoke"))
    since = 0.0
    metrics = train_mod.train_owned(cfg, paths.runs_dir("smoke") / "main")
    assert metrics["accuracy"] == 0.5
    restored = snapshot(paths.runs_dir("smoke") / "main")
    for name in ("metrics.json", "history.json", "test_predictions.npz", "adapter/adapter_model.safetensors"):
        assert restored[name] == original[name], name
    record = runs.read_record(paths.runs_dir("smoke") / "main")
    assert record["status"] == "complete" and record[runs.RESTORED]["computed"]["date"]
    assert runs.same_key(record["run_key"], runs.run_key(cfg))
    sitting = restore.sitting("smoke", since)
    assert sitting["restored"] == 1 and sitting["trained"] == 0
    line = restore.sitting_line("smoke", sitting)
    assert "1 run(s) restored" in line and "0 trained here" in line and "computed 20" in line
    # a later pipeline run reuses the restored run: still stated as restored (computed elsewhere), never as computed here
    later = restore.sitting("smoke", 1e12)
    assert later["restored"] == 1 and later["trained"] == 0 and later["computed"] == sitting["computed"]
    # the ablation run was not asked for: listed as stale, not restored
    assert [s["path"] for s in sitting["stale"]] == ["runs/ablation/r2"]
    assert not (paths.runs_dir("smoke") / "ablation").exists()


def test_a_changed_configuration_is_never_restored_and_is_listed_with_what_changed(monkeypatch) -> None:
    cfg, _ = archived_profile()
    shutil.rmtree(paths.results_dir("smoke"))
    changed = main_config(lora_r=4)
    assert restore.restorable(paths.runs_dir("smoke") / "main", changed) is None
    trained = []
    monkeypatch.setattr(train_mod, "_train_and_score",
                        lambda prep, out, device: trained.append(out) or complete_run(out, changed) and {})
    train_mod.train_owned(changed, paths.runs_dir("smoke") / "main")
    assert trained and runs.RESTORED not in runs.read_record(paths.runs_dir("smoke") / "main")
    stale = {s["path"]: s["changed"] for s in archive.stale_entries("smoke")}
    assert "lora_r (8 -> 4)" in stale["runs/main"]


def test_only_superseded_entries_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    """--drop-superseded removes an entry whose path now holds another archived computation; an entry merely absent
    from the results here (a partial tree) is stale too but may be the only copy of its run: it is kept."""
    cfg, other = archived_profile()
    old_main = archive.entry_id(runs.run_key(cfg), "runs/main")
    shutil.rmtree(paths.results_dir("smoke"))
    complete_run(paths.runs_dir("smoke") / "main", main_config(lora_r=4))  # main changed; the ablation run is absent
    assert main(["archive", "--profile", "smoke", "--drop-superseded"]) == 0
    assert "0 superseded entries dropped" in capsys.readouterr().out  # the new main run is not archived yet: kept
    archive.archive_profile("smoke")
    assert {s["path"] for s in archive.stale_entries("smoke")} == {"runs/main", "runs/ablation/r2"}
    assert main(["archive", "--profile", "smoke", "--drop-superseded"]) == 0
    out = capsys.readouterr().out
    assert f"dropped {old_main} (runs/main: differs in lora_r (8 -> 4)" in out and "1 superseded entry dropped" in out
    entries = archive.manifest("smoke")["entries"]
    assert old_main not in entries and not (paths.archive_dir("smoke") / archive.ENTRIES / old_main).exists()
    assert archive.entry_id(runs.run_key(other), "runs/ablation/r2") in entries
    assert [s["path"] for s in archive.stale_entries("smoke")] == ["runs/ablation/r2"]


def test_edited_data_is_never_restored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(paths.SAMPLE_DATA, data)
    cfg = main_config(data=str(data))
    complete_run(paths.runs_dir("smoke") / "main", cfg)
    archive.archive_profile("smoke")
    shutil.rmtree(paths.results_dir("smoke"))
    assert restore.restorable(paths.runs_dir("smoke") / "main", cfg) is not None
    test_csv = data / "test.csv"
    test_csv.write_text(test_csv.read_text(encoding="utf-8").replace("a", "b", 1), encoding="utf-8")
    assert restore.restorable(paths.runs_dir("smoke") / "main", main_config(data=str(data))) is None


def test_a_user_out_directory_is_trained_never_filled_from_the_archive(tmp_path: Path) -> None:
    cfg, _ = archived_profile()
    assert restore.restorable(tmp_path / "mine", cfg) is None


def test_paths_in_a_key_that_name_this_checkout_or_its_results_are_portable(tmp_path: Path) -> None:
    key = {"tokenizer": str(paths.results_root() / "smoke" / "tok"), "data": str(tmp_path), runs.DATA_KEY: "ab",
           "model_name": "/elsewhere/model", "other": str(paths.ROOT / "data" / "tasks")}
    got = archive.portable(key)
    assert got["tokenizer"] == "<results>/smoke/tok" and got["other"] == "<repository>/data/tasks"
    assert "data" not in got and got["model_name"] == "/elsewhere/model"  # the rows are named by their hash


def test_an_entry_names_no_path_of_this_machine_and_a_restore_writes_this_checkouts_again(no_training: None) -> None:
    """Records and cards are kept relative to the checkout (the data beside it too); restored, the files are the
    ones the run wrote, byte for byte, and /tmp-like paths outside the checkout are left as they were."""
    cfg = main_config()
    run_dir = complete_run(paths.runs_dir("smoke") / "main", cfg)
    beside, elsewhere = paths.ROOT.parent / "shared" / "agnews-subset", "/opt/weights/model"
    write_json({"accuracy": 0.5, "macro_f1": 0.5, "data_source": str(beside), "model": elsewhere,
                "command": f"{paths.ROOT / 'lora_agnews' / '__main__.py'} train --out {run_dir}"},
               run_dir / runs.METRICS_FILE)
    (run_dir / "adapter" / "README.md").write_text(f"python -m lora_agnews predict --adapter {run_dir / 'adapter'}\n")
    original = snapshot(run_dir)
    archive.archive_profile("smoke")
    entry = paths.archive_dir("smoke") / archive.ENTRIES / archive.entry_id(runs.run_key(cfg), "runs/main")
    kept = read_json(entry / runs.METRICS_FILE)
    assert kept["data_source"] == "<repository>/../shared/agnews-subset" and kept["model"] == elsewhere
    assert kept["command"] == "<repository>/lora_agnews/__main__.py train --out <results>/smoke/runs/main"
    card = (entry / "adapter" / "README.md").read_text()
    assert card == "python -m lora_agnews predict --adapter <results>/smoke/runs/main/adapter\n"
    for file in (p for p in entry.rglob("*") if p.suffix in archive.TEXT_FILES):
        assert str(paths.ROOT) not in file.read_text() and str(paths.results_root()) not in file.read_text(), file
    sizes = read_json(entry / archive.ENTRY_FILE)["files"]
    assert sizes[runs.METRICS_FILE] == (entry / runs.METRICS_FILE).stat().st_size
    assert archive.read_entry(entry, runs.METRICS_FILE)["data_source"] == str(beside)
    shutil.rmtree(paths.results_dir("smoke"))
    train_mod.train_owned(cfg, paths.runs_dir("smoke") / "main")
    restored = snapshot(paths.runs_dir("smoke") / "main")
    for name in (runs.METRICS_FILE, "adapter/lora_agnews_config.json"):
        assert restored[name] == original[name], name


def test_runs_recorded_before_the_data_hash_are_not_archived() -> None:
    cfg = main_config()
    run_dir = complete_run(paths.runs_dir("smoke") / "main", cfg)
    record = runs.read_record(run_dir)
    record["run_key"].pop(runs.DATA_KEY)
    runs.write_record(run_dir, record)
    with pytest.raises(archive.ArchiveError, match="no complete run to archive"):
        archive.archive_profile("smoke")
    assert not paths.archive_dir("smoke").exists()


# --------------------------------------------------------------------------- the audit
def test_the_audit_names_runs_restored_without_their_adapter(no_training: None) -> None:
    _, other = archived_profile()
    shutil.rmtree(paths.results_dir("smoke"))
    train_mod.train_owned(other, paths.runs_dir("smoke") / "ablation" / "r2")
    assert audit.restored_without_adapter(paths.results_dir("smoke")) == ["runs/ablation/r2"]
    record = {"runs": 0, "reproduced": 0, "all_reproduced": True, "baseline": None, "rows": 0, "seconds": 0,
              "largest_abs_logit_diff": 0.0, "restored_without_adapter": ["runs/ablation/r2"]}
    assert "1 more run(s), restored from the archive without their adapters, were not re-scored" in audit_text.summary(record)


# --------------------------------------------------------------------------- bad input
def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_an_unknown_profile_is_one_line_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["archive", "--profile", "nope"]) == 2
    assert "nope" in one_error(capsys)
    assert not paths.archive_dir("nope").parent.exists() or not any(paths.archive_dir("nope").parent.iterdir())


@pytest.mark.parametrize("stranger", ["notes.txt", archive.MANIFEST])
def test_an_archive_directory_the_project_did_not_write_is_refused_and_untouched(
        stranger: str, capsys: pytest.CaptureFixture[str], no_training: None) -> None:
    cfg = main_config()
    complete_run(paths.runs_dir("smoke") / "main", cfg)
    root = paths.archive_dir("smoke")
    root.mkdir(parents=True)
    (root / stranger).write_text('{"written_by": "someone else"}')
    before = snapshot(root)
    assert main(["archive", "--profile", "smoke"]) == 2
    error = one_error(capsys)
    assert "was not written by" in error and "move it away" in error
    assert snapshot(root) == before
    shutil.rmtree(paths.results_dir("smoke"))
    with pytest.raises(pipeline.PipelineError, match="was not written by"):
        pipeline.run("smoke", steps="notebooks")
    assert snapshot(root) == before and not paths.results_dir("smoke").exists()


def test_verify_needs_a_positive_count_and_an_archive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["archive", "--profile", "smoke", "--verify", "0"]) == 2
    assert "--verify 0" in one_error(capsys)
    assert main(["archive", "--profile", "smoke", "--verify", "1"]) == 2
    assert "holds no archived run" in one_error(capsys)


def test_a_second_archive_command_waits_its_turn(capsys: pytest.CaptureFixture[str]) -> None:
    complete_run(paths.runs_dir("smoke") / "main", main_config())
    with runs.RunLock(paths.archive_dir("smoke")):
        assert main(["archive", "--profile", "smoke"]) == 2
        assert "being written by another" in one_error(capsys)
    assert main(["archive", "--profile", "smoke"]) == 0


# --------------------------------------------------------------------------- --verify, a real tiny run
def test_verify_retrains_an_archived_run_and_finds_the_same_labels_on_this_machine() -> None:
    cfg = main_config(max_train_samples=32, max_val_samples=16, max_eval_samples=16)
    train_mod.train_owned(cfg, paths.runs_dir("smoke") / "main")
    archive.archive_profile("smoke")
    record = verify.verify_archive("smoke", 1)
    (check,) = record["checks"]
    assert check["path"] == "runs/main" and check["same_kind"] and check["label_agreement"] == 1.0
    assert record["all_identical_where_expected"]
    assert read_json(paths.results_dir("smoke") / "archive_verify.json")["checks"][0]["ok"]


def test_the_book_and_report_say_restored_runs_were_computed_elsewhere_never_here() -> None:
    from lora_agnews.reporting.text import provenance_sentence

    sitting = {"restored": 2, "trained": 1, "computed": ["2026-12-01 on Some CPU (AMX)"]}
    assert provenance_sentence(sitting).startswith("2 run(s) restored from the archive, computed 2026-12-01 on Some "
                                                   "CPU (AMX); 1 trained in this pipeline run")
    assert "restored from the archive, computed 2026-12-01 on Some CPU (AMX)" in pipeline._restored_words(
        {"archive": sitting})
    assert provenance_sentence({"restored": 0, "trained": 3, "computed": []}).startswith("No run was restored")
    assert pipeline._restored_words({}) == "no run restored from the archive"


def test_one_computation_at_two_paths_keeps_each_path_s_own_measurements(no_training: None) -> None:
    """The quantization study's full-precision run is the main run's configuration, trained by another process:
    the same logits, its own timings. Each path restores its own; a path never archived takes the other's."""
    cfg = main_config()
    for name, seconds in (("main", 1.0), ("quantization/none/seed42", 2.0)):
        run_dir = complete_run(paths.runs_dir("smoke") / name, cfg)
        write_json({"accuracy": 0.5, "train_seconds": seconds}, run_dir / runs.METRICS_FILE)
    assert archive.archive_profile("smoke")["entries"] == 2
    shutil.rmtree(paths.results_dir("smoke"))
    for name, seconds in (("main", 1.0), ("quantization/none/seed42", 2.0)):
        assert train_mod.train_owned(cfg, paths.runs_dir("smoke") / name)["train_seconds"] == seconds
    assert train_mod.train_owned(cfg, paths.runs_dir("smoke") / "moved")["train_seconds"] in (1.0, 2.0)
