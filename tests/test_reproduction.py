"""Reproducing a profile here: each retrained run against its archive entry, each study's conclusions against the
archived ones, what differs between the machines stated on the page, never a failure.

Fast: the runs are records written the way training leaves them and the "retrained" tree is a copy of the archived
results, changed where a test needs a difference (no model is trained here); the whole command on the smoke profile
is in test_pipeline.py (slow).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from lora_agnews import pipeline
from lora_agnews.cli import main
from lora_agnews.core import archive, config, hardware, paths, runs
from lora_agnews.core.paths import read_json, write_json
from lora_agnews.reporting import reproduction_reporting as reporting
from lora_agnews.studies import reproduction

SHORT = {"epochs": 1, "max_train_samples": 64, "max_val_samples": 32, "max_eval_samples": 32}


def other_machine() -> dict[str, str]:
    """A machine of another kind than this one (AVX2, or AMX where this one is AVX2)."""
    return {"cpu": "AMD EPYC 7B13", "cpu_kind": "AMX" if hardware.machine()["cpu_kind"] == "AVX2" else "AVX2",
            "gpu": "none"}


def complete_run(run_dir: Path, cfg: config.Config, seed: int) -> Path:
    """A complete run as training leaves it: record (machine and versions), metrics (precision), exact test logits."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    runs.save_arrays(run_dir / "test_predictions.npz", logits=rng.normal(size=(200, 4)).astype(np.float32),
                     labels=rng.integers(0, 4, 200))
    write_json({"accuracy": 0.25, "precision": "bf16", "train_seconds": 60.0, "eval_seconds": 2.0},
               run_dir / runs.METRICS_FILE)
    write_json([{"loss": 1.0, "step": 1}], run_dir / "history.json")
    runs.finish(run_dir, runs.start(run_dir, cfg, "cpu"))
    return run_dir


def statistics(low: float, high: float) -> dict[str, Any]:
    """A seed study's result as notebook 04 writes it (only what its conclusions read)."""
    return {"settings": [{"role": "chosen", "name": "chosen-r8", "vs_baseline": {"mean": (low + high) / 2,
                                                                                   "bootstrap_ci": [low, high]}},
                         {"role": "baseline", "name": "baseline-r8", "vs_baseline": {"mean": 0.0,
                                                                                     "bootstrap_ci": [0.0, 0.0]}}]}


@pytest.fixture
def archived() -> Path:
    """results/smoke with two runs and a seed study, archived (with the study kept); then a "retrained" copy of it
    in the reproduced tree, with its stamp: identical to the archive until a test changes it. Returns that copy."""
    # the main run's key names a file of this checkout, which the archive writes portable (<repository>/...)
    here = {"tokenizer": str(paths.ROOT / "data" / "sample")}
    for name, lora_r, seed, extra in (("main", 8, 1, here), ("ablation/r2", 2, 2, {})):
        complete_run(paths.runs_dir("smoke") / name, config.load("smoke", {**SHORT, "lora_r": lora_r, **extra}), seed)
    write_json(statistics(-0.02, 0.01), paths.results_dir("smoke") / "statistics.json")
    archive.archive_profile("smoke")
    archive.keep_studies("smoke", ("statistics.json",))
    copy = paths.reproduced_dir("smoke")
    shutil.copytree(paths.results_dir("smoke"), copy)
    write_json({"overrides": {}, "finished": runs.now(), "seconds": 42.0}, copy / paths.STAMP)
    return copy


def rows_by_path(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in record["runs"]}


def test_an_identical_retraining_agrees_on_every_label_and_every_conclusion(archived: Path) -> None:
    record = reproduction.compare_profile("smoke")
    assert read_json(paths.reproduction_path("smoke"))["summary"] == record["summary"]
    found = rows_by_path(record)
    assert set(found) == {"runs/main", "runs/ablation/r2"}
    for row in found.values():
        assert row["status"] == reproduction.COMPARED and row["label_agreement"] == 1.0
        assert row["difference"] == 0.0 and row["difference_ci"] == [0.0, 0.0] and row["max_abs_logit_diff"] == 0.0
        assert row["same_setting"] and row["rule"] == "reproduced exactly"
    s = record["summary"]
    assert (s["compared"], s["identical"], s["conclusions"], s["same_conclusions"]) == (2, 2, 1, 1)
    assert not any(d["differs"] for d in record["differences"] if d["aspect"] != "commit")
    text = reporting.headline(record)
    assert "2 of 2 retrained models give the archived label on every test row" in text
    assert "1 of 1 conclusions of the studies are the same." in text
    assert "identical labels are expected (the audit's exact rule)." in reporting.machine_sentence(record)
    assert "| identical, 0.0e+00 |" in reporting.runs_table(record).markdown()
    assert reporting.conclusions_table(record, only_differing=True).latex().startswith("\\emph{Every conclusion")


def test_another_machine_is_stated_as_a_finding_never_an_error(archived: Path) -> None:
    """Retrained on AVX2 in fp32 with another torch: labels move; the record, the page and the report say what
    differs, and nothing raises."""
    for name in ("main", "ablation/r2"):
        run = archived / "runs" / name
        record = read_json(run / runs.RUN_FILE)
        record["machine"] = other_machine()
        record["versions"] = {**record["versions"], "torch": "9.9.9"}
        write_json(record, run / runs.RUN_FILE)
        write_json({**read_json(run / runs.METRICS_FILE), "precision": "fp32"}, run / runs.METRICS_FILE)
    run = archived / "runs" / "main"
    with np.load(run / "test_predictions.npz") as saved:
        logits, labels = saved["logits"].copy(), saved["labels"]
    logits[:20] = -logits[:20]  # 20 of 200 rows scored otherwise: some labels change
    runs.save_arrays(run / "test_predictions.npz", logits=logits, labels=labels)

    done = reproduction.compare_profile("smoke")
    row = rows_by_path(done)["runs/main"]
    assert row["status"] == reproduction.COMPARED and not row["same_setting"]
    assert row["rule"] == "does not reproduce" and row["differing"] == round(200 * (1 - row["label_agreement"]))
    assert 0.85 <= row["label_agreement"] < 1.0 and row["max_abs_logit_diff"] > 0
    low, high = row["difference_ci"]
    assert low <= row["difference"] <= high
    differs = {d["aspect"] for d in done["differences"] if d["differs"]}
    assert {"CPU kind", "CPU", "precision", "torch"} <= differs and "GPU" not in differs
    sentence = reporting.machine_sentence(done)
    assert (f"another setting (machine kind {hardware.machine()['cpu_kind']} against {other_machine()['cpu_kind']} here; "
            f"precision bf16 against fp32)") in sentence
    assert "not an error" in sentence and "torch" in sentence and "stated, not required" in sentence
    assert "beyond noise" in reporting.runs_table(done).markdown()
    assert f"the others agree on {100 * row['label_agreement']:.2f}% of their rows" in reporting.headline(done)
    assert "9.9.9" in reporting.differences_table(done).markdown()
    assert "AVX2" in reporting.latex_section(done)


def test_another_thread_count_on_the_same_setting_is_said_to_change_the_last_bits(archived: Path) -> None:
    for name in ("main", "ablation/r2"):
        record = read_json(archived / "runs" / name / runs.RUN_FILE)
        write_json({**record, "device": "cpu: x86_64 (16 threads)"}, archived / "runs" / name / runs.RUN_FILE)
    done = reproduction.compare_profile("smoke")
    assert done["summary"]["same_setting"] and "device" in {d["aspect"] for d in done["differences"] if d["differs"]}
    assert "(16 threads) here), which changes the last bits of training" in reporting.machine_sentence(done)


def test_a_study_verdict_that_flips_is_detected_and_listed(archived: Path) -> None:
    write_json(statistics(0.01, 0.04), archived / "statistics.json")  # archived: not resolved; here: ahead
    done = reproduction.compare_profile("smoke")
    (pair,) = done["conclusions"]
    assert not pair["same"] and pair["archived"]["verdict"] == "not resolved" and pair["here"]["verdict"] == "higher"
    assert done["summary"]["same_conclusions"] == 0
    assert "0 of 1 conclusions of the studies are the same; 1 differs (listed below)." in reporting.headline(done)
    assert reporting.differing(done["conclusions"]) == [
        "  seed study: chosen: chosen-r8: not resolved, -0.50 [-2.00, +1.00] -> chosen-r8: higher than the baseline, "
        "+2.50 [+1.00, +4.00]"]
    table = reporting.conclusions_table(done, only_differing=True).markdown()
    assert "higher than the baseline" in table and "differs" in table


def test_runs_missing_on_either_side_are_listed_not_compared(archived: Path) -> None:
    shutil.rmtree(archived / "runs" / "ablation")
    complete_run(archived / "runs" / "extra", config.load("smoke", {**SHORT, "lora_r": 4}), 3)
    found = rows_by_path(reproduction.compare_profile("smoke"))
    assert found["runs/ablation/r2"]["status"] == reproduction.NOT_RETRAINED
    assert found["runs/extra"]["status"] == reproduction.NOT_ARCHIVED
    assert found["runs/main"]["status"] == reproduction.COMPARED
    table = reporting.runs_table({"runs": list(found.values())}).markdown()
    assert "not retrained" in table and "not archived" in table


def test_a_multi_label_run_compares_label_sets_at_each_run_s_own_thresholds() -> None:
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    logits = np.array([[2.0, -2.0], [-2.0, 2.0], [0.1, 0.1], [-1.0, -1.0]], dtype=np.float32)
    same = reproduction.compare_predictions((logits, labels), (logits, labels), ([0.5, 0.5], [0.5, 0.5]), "ml")
    assert same["label_agreement"] == 1.0 and same["accuracy"] == 1.0
    # a threshold chosen otherwise here turns row 3's set empty: one set of four differs
    moved = reproduction.compare_predictions((logits, labels), (logits, labels), ([0.5, 0.5], [0.6, 0.5]), "ml")
    assert moved["label_agreement"] == 0.75 and moved["accuracy"] == 0.75 and moved["difference"] == -0.25


def test_every_task_of_a_study_model_is_its_own_pair(tmp_path: Path) -> None:
    """The multi-task model saves one logits array per task, the merged scores one per task and method."""
    rng = np.random.default_rng(0)
    a, b, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2)), rng.integers(0, 2, 8)
    runs.save_arrays(tmp_path / "test_predictions.npz", logits_0=a, labels_0=y, logits_1=b, labels_1=y)
    found = reproduction.prediction_sets(tmp_path, {"tasks": ["agnews", "rotten_tomatoes"]})
    assert list(found) == ["agnews", "rotten_tomatoes"] and np.array_equal(found["rotten_tomatoes"][0], b)
    runs.save_arrays(tmp_path / "test_predictions.npz", **{"0|own adapter": a, "0|merge ties": b, "0|y": y})
    merged = reproduction.prediction_sets(tmp_path, {"tasks": [{"name": "agnews", "methods": ["own adapter",
                                                                                               "merge ties"]}]})
    assert list(merged) == ["agnews: own adapter", "agnews: merge ties"] and np.array_equal(merged["agnews: merge ties"][1], y)


def test_the_book_gets_the_page_only_where_the_record_describes_its_results(archived: Path, tmp_path: Path) -> None:
    record = reproduction.compare_profile("smoke")
    src = tmp_path / "book_src"
    shutil.copytree(paths.BOOK, src)
    pipeline._reproduced_page(src, "smoke", {"overrides": {}})
    page = (src / "reproduced.md").read_text()
    assert page.startswith(f"# {reporting.TITLE}") and reporting.headline(record) in page and "{{" not in page
    files = [c["file"] for c in yaml.safe_load((src / "_toc.yml").read_text())["parts"][0]["chapters"]]
    assert files[:2] == ["results", "reproduced"]
    # results made with other overrides: the record is not theirs, so no page
    other = tmp_path / "other_src"
    shutil.copytree(paths.BOOK, other)
    pipeline._reproduced_page(other, "smoke", {"overrides": {"epochs": 2.0}})
    assert not (other / "reproduced.md").exists()
    assert "reproduced" not in (other / "_toc.yml").read_text()


def test_the_archive_s_cost_estimate_sums_its_recorded_seconds(archived: Path) -> None:
    cost = reproduction.archived_cost("smoke")
    assert cost["runs"] == 2 and cost["without_seconds"] == 0 and cost["computed"]
    recorded = [read_json(e / archive.ENTRY_FILE)["computed"]["wall_seconds"] for e in
                archive.archived_runs("smoke").values()]
    assert cost["seconds"] == pytest.approx(sum(recorded) + 2 * 2.0)
    assert reporting.duration(cost["seconds"]) in reporting.cost_sentence({**reproduction.compare_profile("smoke")})


def test_retraining_turns_the_archive_off_and_writes_only_the_reproduced_tree() -> None:
    results, archive = paths.results_root(), paths.archive_dir("smoke")
    with paths.reproduced_tree(), pipeline.archive_off():
        assert paths.results_dir("smoke") == results / paths.REPRODUCED / "smoke"
        assert paths.archive_dir("smoke") != archive and not paths.archive_dir("smoke").exists()
        assert paths.executed_notebooks_dir("smoke").is_relative_to(paths.build_root())
        assert paths.build_root().name == paths.REPRODUCED
    assert paths.results_root() == results and paths.archive_dir("smoke") == archive


def test_nothing_to_compare_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--profile", "smoke"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no archived run, so there is nothing to reproduce" in err
    with pytest.raises(reproduction.ReproductionError, match="make reproduce PROFILE=smoke"):
        reproduction.compare_profile("smoke")
    assert not paths.reproduced_dir("smoke").exists()
