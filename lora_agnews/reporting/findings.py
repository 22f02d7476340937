"""Findings in the README and the guide, generated from the archive: no result number there is typed by hand.

A generated block sits between two markers in a Markdown file::

    <!-- generated: cpu/quantization-table (python -m lora_agnews findings) -->
    ...
    <!-- /generated -->

``cpu`` names the archive (``archive/cpu``) and ``quantization-table`` one of :data:`FINDINGS`. ``python -m
lora_agnews findings`` rewrites every block from the committed archive; ``--check`` only names the blocks that
differ (a fast test runs it). A block whose runs are not all archived yet says so instead of holding numbers.
The texts are those the book and the report show (one sentence and one table function per study). The main
run and the quantization study are recomputed from the archived runs' records and logits; the seed study, the
grid and the merging study are read from the results the pipeline computed from those runs, which the archive
command keeps beside them (``archive/<profile>/studies``); the seed study's statistics are recomputed from its
archived runs' predictions, with what its kept result recorded besides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core import paths
from ..core.archive import STUDIES, archived_runs, directory_size, manifest, read_entry
from ..core.archive import kept_study as archived_study
from ..core.paths import interval, num, pct, read_json
from ..core.config import from_dict
from ..studies import (archived_seeds, audit, coverage, experiments, merging_study, multilabel_study, quantize_study,
                       reproduction)
from . import ablation_reporting, audit_text, merge_reporting, reproduction_reporting

MARK = re.compile(r"(?P<open><!-- generated: (?P<profile>[\w-]+)/(?P<name>[\w-]+) [^\n]*-->\n)"
                  r"(?P<body>.*?)(?P<close><!-- /generated -->)", re.S)


class FindingsError(ValueError):
    """A marker that names no finding, or a file the findings cannot be written to."""


@dataclass(frozen=True)
class Finding:
    """One generated text: the study result it reads (from an archive) and how it is written."""

    study: Callable[[str], dict[str, Any] | None]  # the profile's study result from its archive, None if incomplete
    write: Callable[[dict[str, Any]], str]
    what: str  # said in place of the numbers while the archive lacks runs
    kept: bool = False  # read from the study results the archive keeps, not recomputed from its runs
    origin: str = ""  # a result that no archive holds: the file it is read from and what writes it


def quantization_study(profile: str) -> dict[str, Any] | None:
    """The quantization study's result computed from the archived runs, as notebook 06 computes it."""
    return quantize_study.archived_result(profile)


# The study results the archive command keeps (lora_agnews.core.archive.keep_studies) for the findings below
STUDY_RESULTS = (experiments.STATISTICS_FILE, experiments.ABLATION_FILE, experiments.RATES_FILE,
                 merging_study.STUDY_FILE, multilabel_study.STUDY_FILE, audit.AUDIT_FILE, audit.VERIFY_FILE)


def kept_study(name: str) -> Callable[[str], Any]:
    """A study's kept result in ``archive/<profile>/studies`` (None where the archive has none)."""
    def read(profile: str) -> Any:
        if not (paths.archive_dir(profile) / STUDIES / name).is_file():
            return None
        found = manifest(profile).get("studies", {}).get("results_format")
        if found != paths.RESULTS_FORMAT:
            raise FindingsError(f"archive/{profile}/{STUDIES} holds results format {found}; this version reads "
                                f"{paths.RESULTS_FORMAT}: run `make all PROFILE={profile}` (it restores the runs), then "
                                f"`python -m lora_agnews archive --profile {profile}`.")
        return archived_study(profile, name)
    return read


def seed_study(profile: str) -> dict[str, Any] | None:
    """The seed study recomputed from its archived runs' predictions (its intervals as this version computes
    them), with the facts its kept result recorded (:func:`..studies.archived_seeds.archived_statistics`)."""
    kept = kept_study(experiments.STATISTICS_FILE)(profile)
    return archived_seeds.archived_statistics(profile, kept) if kept else None


def interval_coverage(_: str) -> dict[str, Any] | None:
    """The intervals' coverage on simulated studies as ``benchmarks/interval_coverage.py`` saved it (no archive
    holds it: the block's profile names none)."""
    path = paths.ROOT / "benchmarks" / "results" / coverage.COVERAGE_FILE
    return read_json(path) if path.is_file() else None


def ablation_frame(profile: str) -> Any:
    import pandas as pd

    rows = kept_study(experiments.ABLATION_FILE)(profile)
    return pd.DataFrame(rows) if rows else None


def merging_result(profile: str) -> dict[str, Any] | None:
    """The kept merging study's rows with their chance checks, and the training steps of its models. A study kept
    before it recorded them gets both from the archived runs: each task's test rows (its chance rate) and the
    records of the task adapters and the multi-task model."""
    import pandas as pd

    saved = kept_study(merging_study.STUDY_FILE)(profile)
    if not saved:
        return None
    frame, archived = pd.DataFrame(saved["rows"]), archived_runs(profile)
    task_dirs = {t["name"]: archived.get(f"runs/merging/tasks/{t['name']}") for t in saved["tasks"]}
    found = {name: d for name, d in task_dirs.items() if d is not None}
    if "chance" not in frame:
        frame = merging_study.with_checks(frame, merging_study.task_chance(found))
    steps = saved["settings"].get("steps")
    if steps is None and len(found) == len(task_dirs):
        steps = merging_study.training_steps(found, archived.get("runs/merging/multitask"))
    return {"frame": frame, "steps": steps}


def main_run(profile: str) -> dict[str, Any] | None:
    """The main run's test scores from its archived record and logits, as notebook 03 states them."""
    import numpy as np

    from ..studies.comparison import bootstrap_ci

    entry = archived_runs(profile).get("runs/main")
    if entry is None:
        return None
    metrics, cfg = read_json(entry / "metrics.json"), from_dict(read_json(entry / "run.json")["config"])
    with np.load(entry / "test_predictions.npz") as saved:
        correct = saved["logits"].argmax(1) == saved["labels"]
    return {"metrics": metrics, "cfg": cfg, "accuracy_ci": bootstrap_ci(correct, seed=cfg.seed)}


def main_sentence(result: dict[str, Any]) -> str:
    """The main run in one sentence: its setting, its size, its rows and its test scores with their interval."""
    from .text import describe_setting

    m, cfg = result["metrics"], result["cfg"]
    low, high = result["accuracy_ci"]
    return (f"{describe_setting(cfg.to_dict(), name_lora=True)} ({num(m['trainable_params'])} trainable parameters), trained on "
            f"{num(m['n_train_used'])} rows for {cfg.epochs:g} epoch(s): **{pct(m['accuracy'])}%** test accuracy "
            f"(95% bootstrap interval {interval(low, high)}) on {num(m['n_eval'])} test rows, macro F1 "
            f"{pct(m['macro_f1'])}%.")


def archive_size(profile: str) -> dict[str, Any] | None:
    """The archive's size: entries, bytes on disk, and the zlib-compressed bytes of its distinct files (what a clone
    costs: git stores identical files once and packs them compressed)."""
    import hashlib
    import zlib

    root = paths.archive_dir(profile)
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    if not files:
        return None
    distinct: dict[str, int] = {}
    for path in files:
        data = path.read_bytes()
        distinct.setdefault(hashlib.sha256(data).hexdigest(), len(zlib.compress(data, 6)))
    return {"profile": profile, "entries": len(manifest(profile)["entries"]),
            "bytes": directory_size(root), "packed": sum(distinct.values())}


def reproduce_cost(profile: str) -> dict[str, Any] | None:
    """What ``make reproduce`` would retrain, by the archive's recorded seconds (None where nothing is archived)."""
    return reproduction.archived_cost(profile) if manifest(profile)["entries"] else None


def size_sentence(size: dict[str, Any]) -> str:
    n = size["entries"]
    return (f"`archive/{size['profile']}`: {n} entr{'y' if n == 1 else 'ies'}, {size['bytes'] / 1e6:.1f} MB on disk, "
            f"{size['packed'] / 1e6:.1f} MB compressed (its distinct files, as git packs them).")


def _provenance(profile: str, kept: bool) -> str:
    data = manifest(profile)
    computed = "; ".join(sorted({e["computed"] for e in data["entries"].values()}))
    if kept:
        return f"the study results in archive/{profile} (kept {data['studies']['written'][:10]}; runs computed {computed})"
    return f"archive/{profile}, computed {computed}"


def multilabel_result(profile: str) -> dict[str, Any] | None:
    """The kept multi-label run's result with its trivial baselines; a result kept before it recorded them gets them
    from the rows the archived run used (its configuration read back, its splits loaded again and checked against the
    sizes it recorded: a mismatch leaves them absent rather than wrong)."""
    from ..core.dataset import load_splits

    result = kept_study(multilabel_study.STUDY_FILE)(profile)
    entry = archived_runs(profile).get("runs/multilabel") if result is not None else None
    if result is None or "baselines" in result or entry is None:
        return result
    cfg = from_dict(read_entry(entry, "run.json")["config"])
    splits = load_splits(cfg)
    sizes = result["metrics"].get("split_sizes", {})
    if (len(splits.train), len(splits.test)) != (sizes.get("train"), sizes.get("test")):
        return result
    return {**result, "baselines": multilabel_study.split_baselines(splits, result["metrics"]["thresholds"], cfg.seed)}


# Without seconds per step: an archive gathers runs from several sittings and machines, and times compare only
# between runs measured side by side (the notebook's own table, from one sitting, shows them).
FINDINGS: dict[str, Finding] = {
    "main": Finding(main_run, main_sentence, "the main run"),
    "quantization-sentence": Finding(quantization_study, lambda r: quantize_study.sentence(r, timing=False),
                                     "the quantization study"),
    "quantization-table": Finding(quantization_study, lambda r: quantize_study.table(r, timing=False).markdown(),
                                  "the quantization study"),
    "seed-study": Finding(seed_study,
                          lambda r: ablation_reporting.study_sentence(r, name_settings=True), "the seed study", kept=True),
    "seed-study-table": Finding(seed_study,
                                lambda r: ablation_reporting.statistics_table(r, timing=False).markdown(),
                                "the seed study", kept=True),
    "grid": Finding(ablation_frame, ablation_reporting.ablation_sentence, "the ablation grid", kept=True),
    # the rate each searched method ran at beside what its search saw (a profile may train at another rate)
    "rates": Finding(kept_study(experiments.RATES_FILE),
                     lambda r: ablation_reporting.rates_table(r).markdown() + "\n" + ablation_reporting.rate_sentence(r),
                     "the rate search", kept=True),
    "merging": Finding(merging_result, lambda r: merge_reporting.sentence(r["frame"], r["steps"]), "the merging study",
                       kept=True),
    "merging-table": Finding(merging_result, lambda r: merge_reporting.report_table(r["frame"]).markdown(),
                             "the merging study", kept=True),
    "multilabel": Finding(multilabel_result, multilabel_study.sentence,
                          "the multi-label run", kept=True),
    # the audit of the sitting that computed the runs (a restore re-scores only the runs that keep an adapter)
    "audit": Finding(kept_study(audit.AUDIT_FILE), audit_text.summary, "the audit", kept=True),
    "size": Finding(archive_size, size_sentence, "the archive"),
    # what `make reproduce` retrains, estimated from the archived runs' recorded seconds
    "reproduce-cost": Finding(reproduce_cost, reproduction_reporting.estimate_sentence, "the archive"),
    # archived runs retrained from their recorded configuration (archive --verify N), the check of runs without adapters
    "verify": Finding(kept_study(audit.VERIFY_FILE), audit_text.verify_sentence, "the retraining check (archive --verify)",
                      kept=True),
    # what no archive holds: the intervals' coverage on simulated studies, as the benchmark saved it
    "interval-coverage": Finding(interval_coverage, lambda r: f"{coverage.table(r).markdown()}\n{coverage.sentence(r)}",
                                 "the coverage benchmark",
                                 origin=f"benchmarks/results/{coverage.COVERAGE_FILE} (`benchmarks/interval_coverage.py`)"),
}


# A summary: several findings as one bullet list, each bullet the finding's own text (or that it is not archived yet)
SUMMARIES: dict[str, tuple[tuple[str, str], ...]] = {
    "headline": (("The main run", "main"), ("The seed study", "seed-study"), ("The audit", "audit")),
    "summary": (("The main run", "main"), ("The seed study", "seed-study"), ("The grid", "grid"),
                ("The audit", "audit")),
    "studies": (("Merging task adapters", "merging"), ("A quantized base", "quantization-sentence"),
                ("A multi-label task", "multilabel")),
}


def _summary(profile: str, name: str) -> str:
    bullets, kept = [], False
    for label, part in SUMMARIES[name]:
        finding = FINDINGS[part]
        result = finding.study(profile)
        text = (finding.write(result).strip() if result is not None
                else f"*{finding.what[0].upper()}{finding.what[1:]} is not archived yet.*")
        bullets.append(f"- **{label}.** {text}")
        kept = kept or (result is not None and finding.kept)
    if not any("not archived yet" not in b for b in bullets):
        return _missing(profile, "none of these studies")
    return "\n".join(bullets) + f"\n\n*Generated from {_provenance(profile, kept)}.*\n"


def _missing(profile: str, what: str) -> str:
    return (f"*Not generated yet: {what} is complete in `archive/{profile}` "
            if what.startswith("none") else f"*Not generated yet: {what} is not complete in `archive/{profile}` "
            f"(`python -m lora_agnews archive --profile {profile}` after the profile's runs).*\n")


def render(profile: str, name: str) -> str:
    """The block's text for ``profile``'s archive (ends with a newline), or why it has no numbers yet."""
    if name in SUMMARIES:
        return _summary(profile, name)
    if name not in FINDINGS:
        raise FindingsError(f"generated block {profile}/{name}: no such finding; use one of "
                            f"{', '.join([*FINDINGS, *SUMMARIES])}.")
    finding = FINDINGS[name]
    result = finding.study(profile)
    if result is None:
        return f"*Not generated yet: {finding.origin} is missing.*\n" if finding.origin else _missing(profile, finding.what)
    return f"{finding.write(result).rstrip()}\n\n*Generated from {finding.origin or _provenance(profile, finding.kept)}.*\n"


def documents() -> list[Path]:
    """The files that may hold generated blocks: the README and the guide's pages."""
    return [paths.ROOT / "README.md", *sorted((paths.BOOK / "guide").glob("*.md"))]


def regenerate(text: str) -> str:
    """``text`` with every generated block rewritten."""
    return MARK.sub(lambda m: m["open"] + render(m["profile"], m["name"]) + m["close"], text)


def update(check: bool = False) -> list[str]:
    """Rewrite the generated blocks of :func:`documents` (``check``: write nothing); the files that differ(ed)."""
    changed = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            changed.append(str(path.relative_to(paths.ROOT)))
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed
