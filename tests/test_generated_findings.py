"""Findings in the README and the guide are generated from the archive (reporting.findings): the committed text is
what the committed archive gives, and a block whose study is not archived whole holds no number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_agnews.cli import main
from lora_agnews.core import archive, config, paths, runs
from lora_agnews.core.paths import write_json
from lora_agnews.reporting import findings
from lora_agnews.studies import quantize_study

BLOCK = "<!-- generated: smoke/{} (python -m lora_agnews findings) -->\nstale text\n<!-- /generated -->\n"


def quantization_run(scheme: str, seed: int, accuracy_shift: int) -> None:
    """A complete run of the smoke quantization study as training leaves it (no model is trained here)."""
    cfg = config.load("smoke", {"quantize": scheme, "seed": seed})
    run_dir = quantize_study.run_dir(cfg, scheme, seed)
    run_dir.mkdir(parents=True)
    labels = np.arange(40) % 4
    logits = np.eye(4, dtype=np.float32)[labels]
    logits[:accuracy_shift] = np.roll(logits[:accuracy_shift], 1, axis=1)  # the first rows wrong
    runs.save_arrays(run_dir / "test_predictions.npz", logits=logits, labels=labels)
    accuracy = float((logits.argmax(1) == labels).mean())
    write_json({"accuracy": accuracy, "macro_f1": accuracy, "trainable_params": 10, "train_seconds": 10.0,
                "global_steps": 5, "parameter_breakdown": {"base_bytes": 100 if scheme == "none" else 40,
                                                           "base_bytes_fp32": 100},
                "process_peak_rss_bytes": 2 ** 30}, run_dir / runs.METRICS_FILE)
    write_json([], run_dir / "history.json")
    runs.finish(run_dir, runs.start(run_dir, cfg, "cpu"))


def archive_study(schemes: dict[str, int]) -> None:
    for scheme, wrong in schemes.items():
        for seed in (42, 43):
            quantization_run(scheme, seed, wrong + seed - 42)
    archive.archive_profile("smoke")


def test_a_block_is_the_study_s_own_table_computed_from_the_archived_runs(isolated_outputs: Path) -> None:
    archive_study({"none": 2, "nf4": 6})
    text = findings.regenerate("before\n" + BLOCK.format("quantization-table") + "after\n")
    table = quantize_study.table(findings.quantization_study("smoke"), timing=False).markdown()
    assert text.startswith("before\n<!-- generated: smoke/quantization-table") and text.endswith("after\n")
    assert table in text and "stale text" not in text and "Generated from archive/smoke, computed" in text
    assert "-10.00" in table  # nf4 gets 4 more of 40 rows wrong at each seed: 10 points below full precision
    assert "s/step" not in text and "seconds per step" not in text  # times of other sittings do not compare
    assert findings.regenerate(text) == text  # generating again changes nothing


def test_a_study_not_archived_whole_holds_no_number(isolated_outputs: Path) -> None:
    quantization_run("none", 42, 0)
    quantization_run("nf4", 42, 4)
    quantization_run("none", 43, 0)  # nf4 seed 43 is missing
    archive.archive_profile("smoke")
    text = findings.regenerate(BLOCK.format("quantization-sentence"))
    assert "Not generated yet" in text and not any(ch.isdigit() for ch in text.split("-->")[1].split("<!--")[0])


def test_a_marker_naming_no_finding_is_refused_by_name() -> None:
    with pytest.raises(findings.FindingsError, match="smoke/nothing: no such finding"):
        findings.regenerate(BLOCK.format("nothing"))


def test_the_committed_readme_and_guide_are_what_the_committed_archive_gives(monkeypatch: pytest.MonkeyPatch,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LORA_AGNEWS_ARCHIVE", str(paths.ROOT / "archive"))  # conftest points tests elsewhere
    blocks = [m for doc in findings.documents() for m in findings.MARK.finditer(doc.read_text(encoding="utf-8"))]
    assert blocks, "the README and the guide hold generated findings"
    assert main(["findings", "--check"]) == 0, capsys.readouterr().out


def test_the_main_run_is_stated_from_its_archived_record_and_logits(isolated_outputs: Path) -> None:
    from lora_agnews.studies.comparison import bootstrap_ci

    cfg = config.load("smoke")
    run_dir = paths.runs_dir("smoke") / "main"
    run_dir.mkdir(parents=True)
    labels = np.arange(40) % 4
    logits = np.eye(4, dtype=np.float32)[labels]
    logits[:10] = np.roll(logits[:10], 1, axis=1)
    runs.save_arrays(run_dir / "test_predictions.npz", logits=logits, labels=labels)
    write_json({"accuracy": 0.75, "macro_f1": 0.7, "trainable_params": 1234, "n_train_used": 64, "n_eval": 40},
               run_dir / runs.METRICS_FILE)
    write_json([], run_dir / "history.json")
    runs.finish(run_dir, runs.start(run_dir, cfg, "cpu"))
    archive.archive_profile("smoke")
    text = findings.render("smoke", "main")
    low, high = bootstrap_ci(logits.argmax(1) == labels, seed=cfg.seed)
    assert "**75.00%** test accuracy" in text and f"[{100 * low:.2f}, {100 * high:.2f}]" in text
    assert "1,234 trainable parameters" in text and "on 40 test rows" in text


SEEDS = (42, 43, 44)


def seed_runs(role: str, cfg: config.Config, wrong: int) -> list[Path]:
    """Complete runs of one seed-study setting at seeds 42, 43 and 44 as training leaves them (no model is trained):
    ``wrong`` of the 40 test rows wrong at seed 42, one more at each later seed."""
    from lora_agnews.studies import experiments

    out = []
    for seed in SEEDS:
        run_dir = paths.runs_dir("smoke") / "seeds" / role / f"seed{seed}"
        run_dir.mkdir(parents=True)
        labels = np.arange(40) % 4
        logits = np.eye(4, dtype=np.float32)[labels]
        shift = wrong + seed - 42
        logits[:shift] = np.roll(logits[:shift], 1, axis=1)
        runs.save_arrays(run_dir / "test_predictions.npz", logits=logits, labels=labels)
        write_json({"accuracy": 1 - shift / 40, "macro_f1": 0.5, "trainable_params": 1234}, run_dir / runs.METRICS_FILE)
        write_json([], run_dir / "history.json")
        runs.finish(run_dir, runs.start(run_dir, experiments.seed_run_config(cfg, seed), "cpu"))
        out.append(run_dir)
    return out


def seed_study_result(chosen_wrong: int, baseline_wrong: int) -> dict:
    """The seed study's statistics.json as the pipeline writes it from its runs (two settings, three seeds: the fewest
    a verdict needs)."""
    from lora_agnews.studies import experiments
    from lora_agnews.studies.comparison import run_arm

    cfg = config.load("smoke")
    settings = (("chosen", cfg, chosen_wrong), ("baseline", experiments.baseline_config(cfg), baseline_wrong))
    arms = [run_arm(role, seed_runs(role, c, wrong), list(SEEDS)) for role, c, wrong in settings]
    facts = [{"config": c.to_dict(), "trainable_params": 1234, "train_seconds": [9.0] * len(SEEDS)} for _, c, _ in settings]
    return experiments.seed_statistics(["chosen", "baseline"], arms, facts, 42, "smoke")


def test_the_archive_keeps_the_study_results_its_runs_gave_and_the_findings_read_them(isolated_outputs: Path) -> None:
    """archive keeps statistics.json beside the runs; the seed-study block is the book's sentence and table of it,
    recomputed from the archived runs (the intervals this version computes) with the kept facts, without seconds;
    a profile without one holds no number."""
    from lora_agnews.reporting import ablation_reporting
    from lora_agnews.studies import experiments

    result = seed_study_result(2, 12)  # the chosen setting gets 10 more of 40 rows right at each seed
    write_json(result, paths.results_dir("smoke") / experiments.STATISTICS_FILE)
    assert "Not generated yet" in findings.render("smoke", "seed-study")
    assert main(["archive", "--profile", "smoke"]) == 0
    kept = paths.archive_dir("smoke") / archive.STUDIES / experiments.STATISTICS_FILE
    assert kept.is_file() and archive.manifest("smoke")["studies"]["files"] == [experiments.STATISTICS_FILE]
    text = findings.regenerate(BLOCK.format("seed-study-table") + BLOCK.format("seed-study"))
    assert ablation_reporting.statistics_table(result, timing=False).markdown() in text
    assert "+25.00 [" in text and "Train s/run" not in text and "train s/run" not in text
    assert "+25.00 points [" in text and "ahead of the baseline" in text
    assert "Generated from the study results in archive/smoke" in text
    # a kept result of another computation is recomputed from the runs: its intervals are not what is stated
    stale = {**result, "settings": [{**result["settings"][0], "vs_baseline": {
        **result["settings"][0]["vs_baseline"], "bootstrap_ci": [-0.5, 0.9]}}, result["settings"][1]]}
    write_json(stale, kept)
    again = findings.render("smoke", "seed-study")
    assert "[-50.00, +90.00]" not in again and "ahead of the baseline" in again
    # study results kept by a version whose results read otherwise are refused, naming the two commands that renew them
    data = archive.manifest("smoke")
    write_json({**data, "studies": {**data["studies"], "results_format": paths.RESULTS_FORMAT - 1}},
               paths.archive_dir("smoke") / archive.MANIFEST)
    with pytest.raises(findings.FindingsError, match="make all PROFILE=smoke.*archive --profile smoke"):
        findings.render("smoke", "seed-study")


def test_an_archive_directory_holding_a_stranger_is_still_refused_beside_kept_studies(isolated_outputs: Path) -> None:
    root = paths.archive_dir("smoke")
    (root / archive.STUDIES).mkdir(parents=True)
    (root / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(archive.ArchiveError, match="notes.txt"):
        archive.check_archive_dir("smoke")


def test_the_retraining_check_is_kept_and_stated(isolated_outputs: Path) -> None:
    """archive --verify's result survives the sitting (kept beside the runs) and the guide states it: identical
    labels required on the same machine kind, the agreement stated for another kind."""
    from lora_agnews.studies import audit

    quantization_run("none", 42, 0)
    check = {"path": "runs/main", "id": "x", "max_abs_logit_diff": 0.0, "ok": True, "line": ""}
    record = {"profile": "smoke", "checked_at": "2026-12-03T18:00:00+00:00", "seed": 0,
              "machine": {"cpu": "Some CPU", "cpu_kind": "AMX", "gpu": "none"}, "all_identical_where_expected": True,
              "checks": [{**check, "label_agreement": 1.0, "same_kind": True},
                         {**check, "label_agreement": 0.9975, "same_kind": False}]}
    write_json(record, paths.results_dir("smoke") / audit.VERIFY_FILE)
    assert main(["archive", "--profile", "smoke"]) == 0
    text = findings.render("smoke", "verify")
    assert "2 archived run(s) drawn at random (seed 0) were retrained" in text and "on 2026-12-03" in text
    assert "Of the 1 computed on this machine kind, 1 gave identical labels" in text
    assert "1 were computed on another kind: 99.75% of labels or more agree" in text
    size = findings.archive_size("smoke")
    on_disk = sum(p.stat().st_size for p in paths.archive_dir("smoke").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert size["entries"] == 1 and size["bytes"] == on_disk and 0 < size["packed"] < on_disk
    assert findings.render("smoke", "size").startswith(f"`archive/smoke`: 1 entry, {on_disk / 1e6:.1f} MB on disk")


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_committed_archive_names_no_path_of_the_machine_that_wrote_it() -> None:
    """A clone elsewhere (CI checks out into another directory, without ../shared) must find the same runs: a kept
    study naming /work/shared/... matched no archived record there, and the seed study read "not archived yet"."""
    found = [(str(f.relative_to(paths.ROOT)), s) for f in sorted((paths.ROOT / "archive").rglob("*.json"))
             for s in _strings(paths.read_json(f)) if s.startswith("/") and not s.startswith("/tmp/")]
    assert not found, found[:5]


def test_kept_studies_name_the_data_beside_the_checkout_relative_to_it(isolated_outputs: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    beside = str(paths.ROOT.parent / "shared" / "rows")
    quantization_run("none", 42, 0)  # the archive command keeps study results beside a run
    write_json({"settings": [{"config": {"data": beside}}]}, paths.results_dir("smoke") / "statistics.json")
    assert main(["archive", "--profile", "smoke"]) == 0
    text = (paths.archive_dir("smoke") / archive.STUDIES / "statistics.json").read_text(encoding="utf-8")
    assert beside not in text and "<repository>/../shared/rows" in text
    elsewhere = isolated_outputs / "clone" / "main"
    monkeypatch.setattr(paths, "ROOT", elsewhere)
    kept = archive.kept_study("smoke", "statistics.json")
    assert kept["settings"][0]["config"]["data"] == str(elsewhere.parent / "shared" / "rows")
    assert archive.kept_study("smoke", "missing.json") is None
