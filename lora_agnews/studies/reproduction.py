"""Reproduced on this machine: a profile's runs retrained here, compared with the computation the archive keeps.

``python -m lora_agnews reproduce --profile P`` (:func:`lora_agnews.pipeline.reproduce`) retrains every run of P
into ``results/reproduced/P`` with the archive turned off. :func:`compare_profile` then compares, per run path,
the retrained run with the archive entry of the same path and identity (the share of test rows given the same
label, the accuracy difference with its paired bootstrap interval, the largest logit difference) and every
conclusion the studies state (the seed study's and the grid's verdicts, the merging and quantization studies'
differences, the grid's pick, the multi-label run's thresholds, the rate search's picks) with the archived one.
It also lists what differs between where the archive was computed and here: the machine's kind, the precision,
package versions, the code's commit.

Each pair is also put to the audit's one rule (:mod:`.agreement`): on the same setting (machine kind and precision)
retraining is the same computation, so the labels must be identical; on another setting the rounding of every
training step differs, so the rule's verdict (identical, within numerical noise, beyond it) is stated, not
required. A difference is recorded, never raised: a few changed labels can move a verdict near its boundary, and
that is a finding about the result, not an error of the run. The record goes to ``results/P/reproduction.json``,
where the book and the report read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..core import hardware, paths, runs
from ..core.paths import read_json, write_json
from .agreement import Setting, agree, same_setting
from .comparison import PREDICTIONS_FILE, DifferentRows, check_same_rows, direction, paired_difference_ci

SEED = 0  # the paired bootstrap's seed: the same intervals every time the same runs are compared
# What became of each archived entry (and each retrained run) in the comparison
COMPARED = "compared"
NOT_RETRAINED = "not retrained"  # no run at the entry's path here: the profile no longer asks for it
OTHER_CONFIGURATION = "another configuration"  # the run at the path here is of another identity (a stale entry)
OTHER_ROWS = "other test rows"  # same identity, other rows: cannot be paired
RESTORED = "restored, not retrained"  # a reproduced tree holding a restored run (copied in by hand)
NOT_ARCHIVED = "not archived"  # retrained here, no entry at its path
# The study results whose conclusions are compared (written by the notebooks, kept by the archive command)
STUDY_FILES = {"statistics": "statistics.json", "ablation": "ablation.json", "merging": "merging.json",
               "multilabel": "multilabel.json", "learning_rates": "learning_rates.json"}
PACKAGES = ("python", "torch", "transformers", "peft", "accelerate", "tokenizers", "numpy", "scikit-learn", "datasets")


class ReproductionError(paths.ProjectError):
    """The comparison cannot be made as asked (no retrained tree, no archive); the message says what to run."""


# --------------------------------------------------------------------------- one pair of predictions
def prediction_sets(run_dir: Path, record: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A run's saved test logits and labels, by task: ``{"": ...}`` for one task, one per task for the merging
    study's multi-task model (``logits_0``, ... in the order of its record's ``tasks``), one per task and method for
    its merged scores (``<task>|<method>`` and ``<task>|y``, named as its record's ``tasks`` name them)."""
    with np.load(Path(run_dir) / PREDICTIONS_FILE) as saved:
        if "logits" in saved:
            return {"": (saved["logits"], saved["labels"])}
        tasks = list(record.get("tasks") or [])
        if any("|" in name for name in saved.files):
            return {f"{task['name']}: {method}": (saved[f"{t}|{method}"], saved[f"{t}|y"])
                    for t, task in enumerate(tasks) for method in task["methods"]}
        count = len([k for k in saved.files if k.startswith("logits_")])
        return {(tasks[k] if k < len(tasks) else str(k)): (saved[f"logits_{k}"], saved[f"labels_{k}"])
                for k in range(count)}


def decisions(logits: np.ndarray, labels: np.ndarray, thresholds: list[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's prediction and whether it is right: the top class, or for a multi-label run (``labels`` an
    indicator matrix) the label set at the run's own thresholds, right only when the whole set is."""
    if np.ndim(labels) == 2:
        from ..core.tasks.multilabel_scores import apply_thresholds, sigmoid

        predicted = apply_thresholds(sigmoid(logits), thresholds if thresholds else 0.5) > 0
        return predicted, (predicted == (np.asarray(labels) > 0)).all(axis=1)
    predicted = np.asarray(logits).argmax(axis=1)
    return predicted, predicted == np.asarray(labels)


def compare_predictions(archived: tuple[np.ndarray, np.ndarray], here: tuple[np.ndarray, np.ndarray],
                        thresholds: tuple[list[float] | None, list[float] | None], what: str,
                        settings: tuple[Setting, Setting] | None = None) -> dict[str, Any]:
    """Retrained (``here``) against archived logits of the same rows: label agreement, both accuracies, the paired
    difference (here minus archived) with its 95% bootstrap interval and what it concludes, the largest logit
    difference, and the verdict of the audit's rule for the two ``settings`` (archived, here). Raises
    :class:`DifferentRows` when the rows are not the same rows in the same order."""
    (old_logits, old_labels), (new_logits, new_labels) = archived, here
    check_same_rows(np.asarray(old_labels), np.asarray(new_labels), what)
    old_pred, old_right = decisions(old_logits, old_labels, thresholds[0])
    new_pred, new_right = decisions(new_logits, new_labels, thresholds[1])
    same = (old_pred == new_pred) if old_pred.ndim == 1 else (old_pred == new_pred).all(axis=1)
    low, high = paired_difference_ci(new_right[None, :], old_right[None, :], seed=SEED)
    largest = float(np.abs(new_logits - old_logits).max()) if np.shape(new_logits) == np.shape(old_logits) else None
    return {"n_test": int(len(old_right)), "archived_accuracy": float(old_right.mean()),
            "accuracy": float(new_right.mean()), "difference": float(new_right.mean() - old_right.mean()),
            "difference_ci": [low, high], "direction": direction(low, high), "label_agreement": float(same.mean()),
            "max_abs_logit_diff": largest, **_rule(old_logits, new_logits, old_labels, thresholds[0], settings)}


def _rule(old: np.ndarray, new: np.ndarray, labels: np.ndarray, thresholds: list[float] | None,
          settings: tuple[Setting, Setting] | None) -> dict[str, Any]:
    """The audit's verdict on the pair (:func:`.agreement.agree`, the archived run's thresholds for a multi-label
    run), with the largest recorded margin among the rows whose label differs; nothing without settings."""
    if settings is None or np.shape(old) != np.shape(new):
        return {}
    cut = None
    if np.ndim(labels) == 2:
        cut = np.broadcast_to(np.asarray(thresholds if thresholds else 0.5, dtype=np.float64), np.shape(old))
    found = agree(np.asarray(old), np.asarray(new), *settings, cut)
    return {"same_setting": found.exact, "rule": found.verdict, "differing": found.differing,
            "largest_margin": found.largest_margin}


# --------------------------------------------------------------------------- where and how each side was computed
def read_entry(run_dir: Path, name: str) -> Any:
    """A JSON file of a run or an archive entry (an entry's paths written for this checkout)."""
    from ..core.archive import read_entry as entry_file

    return entry_file(run_dir, name)


def _metrics(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / runs.METRICS_FILE
    return read_entry(run_dir, runs.METRICS_FILE) if path.is_file() else {}


def _thresholds(metrics: Mapping[str, Any]) -> list[float] | None:
    found = metrics.get("thresholds")
    return list(found["per_label"]) if isinstance(found, dict) and "per_label" in found else None


def archived_side(entry: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """Where, when, in which precision and with which packages an archived entry was computed."""
    computed = info.get("computed") or {}
    return {"machine": computed.get("machine") or {}, "precision": _metrics(entry).get("precision"),
            "device": computed.get("device"), "versions": computed.get("versions") or {},
            "git_commit": computed.get("git_commit"), "date": computed.get("date")}


def retrained_side(run_dir: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """The same facts for a run retrained here (a study model's record names no machine: it was written here)."""
    return {"machine": record.get("machine") or hardware.machine(), "precision": _metrics(run_dir).get("precision"),
            "device": record.get("device"), "versions": record.get("versions") or runs.library_versions(),
            "git_commit": record.get("git_commit") or runs.git_commit(), "date": record.get("finished")}


def setting(side: Mapping[str, Any]) -> Setting:
    """A side's setting for the audit's rule: its machine kind (the GPU where it had one) and its precision (a study
    model's record names none: the precision its training resolved, bf16 where the kind has bf16 units)."""
    kind = hardware.kind_of(side["machine"])
    precision = side.get("precision") or ("bf16" if kind.startswith("GPU") or kind in hardware.BF16_KINDS else "fp32")
    return Setting(kind, precision)


# --------------------------------------------------------------------------- runs
def retrained_runs(profile: str) -> dict[str, Any]:
    """Every complete run (and merging-study model) of the reproduced tree by its path, with its identity as the
    archive writes it (paths under the results root made portable against the reproduced root)."""
    from ..core.archive import identity, sources

    with paths.reproduced_tree():
        return {s.rel: (s, identity(s.key)) for s in sources(profile)}


def compare_runs(profile: str) -> list[dict[str, Any]]:
    """One row per archived entry (one per task for a multi-task model), then one per retrained run the archive
    lacks: what became of it (:data:`COMPARED` or why not) and, where compared, :func:`compare_predictions`."""
    from ..core.archive import ENTRIES, manifest

    here = retrained_runs(profile)
    entries = manifest(profile)["entries"]
    rows: list[dict[str, Any]] = []
    for eid in sorted(entries, key=lambda e: (entries[e]["path"], e)):
        rows += _entry_rows(paths.archive_dir(profile) / ENTRIES / eid, here)
    archived = {r["path"] for r in rows}
    for rel, (source, _) in sorted(here.items()):
        if rel not in archived:
            record = read_json(source.path / source.record_file)
            rows.append({"path": rel, "entry": None, "kind": source.kind, "task": "", "status": NOT_ARCHIVED,
                         "here": retrained_side(source.path, record)})
    return rows


def _entry_rows(entry: Path, here: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of one archived entry: its retraining at the same path compared, or why it is not."""
    from ..core.archive import ENTRY_FILE

    info = read_json(entry / ENTRY_FILE)  # as written: its identity holds the portable paths a key is compared in
    base = {"path": info["path"], "entry": entry.name, "kind": info["kind"], "archived": archived_side(entry, info)}
    if info["path"] not in here:
        return [{**base, "task": "", "status": NOT_RETRAINED}]
    source, ident = here[info["path"]]
    record = read_json(source.path / source.record_file)
    base["here"] = retrained_side(source.path, record)
    base["same_setting"] = same_setting(setting(base["archived"]), setting(base["here"]))
    if runs.RESTORED in record or ident != info["identity"]:
        return [{**base, "task": "", "status": RESTORED if runs.RESTORED in record else OTHER_CONFIGURATION}]
    return _compared_rows(base, entry, info, source.path, record)


def _compared_rows(base: dict[str, Any], entry: Path, info: Mapping[str, Any], run_dir: Path,
                   record: Mapping[str, Any]) -> list[dict[str, Any]]:
    old_sets = prediction_sets(entry, read_entry(entry, info["record_file"]))
    new_sets = prediction_sets(run_dir, record)
    thresholds = (_thresholds(_metrics(entry)), _thresholds(_metrics(run_dir)))
    settings = (setting(base["archived"]), setting(base["here"]))
    rows = []
    for task, archived in old_sets.items():
        what = f"{base['path']}" + (f" ({task})" if task else "")
        if task not in new_sets:
            rows.append({**base, "task": task, "status": OTHER_ROWS})
            continue
        try:
            rows.append({**base, "task": task, "status": COMPARED,
                         **compare_predictions(archived, new_sets[task], thresholds, what, settings)})
        except DifferentRows:
            rows.append({**base, "task": task, "status": OTHER_ROWS})
    return rows


# --------------------------------------------------------------------------- the studies' conclusions
def _verdict(study: str, item: str, low: float | None, high: float | None, value: float | None,
             setting: str | None = None) -> dict[str, Any]:
    """A conclusion drawn from a paired interval: higher, lower or not resolved (:func:`direction`)."""
    known = low is not None and high is not None
    return {"study": study, "item": item, "verdict": direction(low, high) if known else "not scored",
            "value": value, "ci": [low, high] if known else None, "setting": setting}


def _choice(study: str, item: str, chosen: str) -> dict[str, Any]:
    """A conclusion that is a choice (a pick, a threshold): the same or not."""
    return {"study": study, "item": item, "verdict": chosen, "value": None, "ci": None, "setting": None}


def seed_conclusions(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The seed study: each setting against the baseline (ahead, behind, not distinguishable), and which setting."""
    return [_verdict("seed study", s["role"], *s["vs_baseline"]["bootstrap_ci"], s["vs_baseline"]["mean"], s["name"])
            for s in stats["settings"] if s["role"] != "baseline"]


def grid_conclusions(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The grid, a screen of single-seed runs: what it concludes is its ranking by validation accuracy (the pick
    first, :func:`lora_agnews.studies.experiments.by_validation`), never a gap between two settings' test scores."""
    import pandas as pd

    from .experiments import by_validation

    settings = [r for r in rows if not r.get("lr_search") and r.get("accuracy") is not None]
    if not settings:
        return []
    ranked = list(by_validation(pd.DataFrame(settings))["name"])
    return [_choice("grid", "pick on validation accuracy", ranked[0]),
            _choice("grid", "ranking by validation accuracy", ", ".join(ranked))]


def merging_conclusions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The merging study: each method on each task against the task's own adapter."""
    from .merging import OWN

    return [_verdict("merging", f"{r['task']}: {r['method']}", r.get("diff_ci_low"), r.get("diff_ci_high"),
                     r.get("diff_to_own")) for r in result["rows"] if r["method"] != OWN]


def quantization_conclusions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The quantization study: each quantized base against full precision."""
    return [_verdict("quantization", c["scheme"], *c["bootstrap_ci"], c["mean_difference"])
            for c in result["comparisons"]]


def multilabel_conclusions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The multi-label run: the decision thresholds it chose on validation."""
    t = result["metrics"]["thresholds"]
    return [_choice("multi-label", "global threshold", f"{t['global']:.2f}"),
            _choice("multi-label", "per-label thresholds", ", ".join(f"{x:.2f}" for x in t["per_label"]))]


def rate_conclusions(choices: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rate search: the rate each method picked on validation."""
    return [_choice("learning rate", c["method"], "none" if c["picked"] is None else f"{c['picked']:g}")
            for c in choices]


CONCLUSIONS = {"statistics": seed_conclusions, "ablation": grid_conclusions, "merging": merging_conclusions,
               "quantization": quantization_conclusions, "multilabel": multilabel_conclusions,
               "learning_rates": rate_conclusions}


def conclusions(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every conclusion of the study results given (``{name: result}``, a study absent or None skipped)."""
    return [c for name, read in CONCLUSIONS.items() if results.get(name) is not None for c in read(results[name])]


def archived_studies(profile: str) -> tuple[dict[str, Any], str | None]:
    """The study results the archive keeps (and the quantization study from its archived runs), with a note where
    the kept ones are of another results format (then only the quantization study is compared)."""
    from ..core.archive import STUDIES, kept_study, manifest
    from .archived_seeds import archived_statistics
    from .quantize_study import archived_result

    found: dict[str, Any] = {"quantization": archived_result(profile)}
    kept = manifest(profile).get("studies", {})
    if kept and kept.get("results_format") != paths.RESULTS_FORMAT:
        return found, (f"archive/{profile}/{STUDIES} holds results format {kept.get('results_format')} and this "
                       f"version reads {paths.RESULTS_FORMAT}, so only the quantization study's conclusions are compared")
    kept_results = {name: kept_study(profile, f) for name, f in STUDY_FILES.items()}
    found.update({name: result for name, result in kept_results.items() if result is not None})
    if found.get("statistics") is not None:  # its intervals as this version computes them from the same runs
        found["statistics"] = archived_statistics(profile, found["statistics"]) or found["statistics"]
    return found, None


def retrained_studies(profile: str) -> dict[str, Any]:
    """The same study results of the reproduced tree."""
    from .quantize_study import STUDY_FILE

    root = paths.reproduced_dir(profile)
    files = {**STUDY_FILES, "quantization": STUDY_FILE}
    return {name: read_json(root / f) for name, f in files.items() if (root / f).is_file()}


def pair_conclusions(archived: list[dict[str, Any]], here: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each conclusion with its counterpart (by study and item): the same verdict (and setting), or not."""
    by_key = {(c["study"], c["item"]): c for c in here}
    out = []
    for c in archived:
        other = by_key.pop((c["study"], c["item"]), None)
        same = other is not None and (other["verdict"], other["setting"]) == (c["verdict"], c["setting"])
        out.append({"study": c["study"], "item": c["item"], "archived": c, "here": other, "same": same})
    out += [{"study": c["study"], "item": c["item"], "archived": None, "here": c, "same": False} for c in by_key.values()]
    return out


# --------------------------------------------------------------------------- machines and costs
def _values(sides: Iterable[Mapping[str, Any]], read: Any) -> list[str]:
    return sorted({str(v) for v in (read(s) for s in sides) if v not in (None, "")})


ASPECTS = (("CPU kind", lambda s: s["machine"].get("cpu_kind")), ("CPU", lambda s: s["machine"].get("cpu")),
           ("GPU", lambda s: s["machine"].get("gpu")), ("precision", lambda s: s.get("precision")),
           # the torch threads: on a CPU they change the last bits of training (reductions split otherwise)
           ("device", lambda s: s.get("device")),
           *((name, (lambda n: lambda s: s["versions"].get(n))(name)) for name in PACKAGES),
           ("commit", lambda s: (s.get("git_commit") or "")[:12]))


def differences(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per aspect (machine kind, CPU, GPU, precision, each package's version, the commit): the values of the
    compared archived runs and of the runs retrained here, and whether they differ."""
    compared = [r for r in rows if r["status"] == COMPARED]
    old, new = [r["archived"] for r in compared], [r["here"] for r in compared]
    out = []
    for name, read in ASPECTS:
        a, b = _values(old, read), _values(new, read)
        out.append({"aspect": name, "archived": a, "here": b, "differs": a != b})
    return out


def archived_cost(profile: str) -> dict[str, Any]:
    """What retraining the archived runs cost where they were computed: the sum of their recorded training and
    test-scoring seconds (``computed.wall_seconds`` and ``eval_seconds``), with the machines; an estimate of a
    reproduction, which also executes the notebooks and trains the merging study's own models (no seconds kept)."""
    from ..core.archive import ENTRIES, ENTRY_FILE, machine_line, manifest

    seconds, counted, uncounted, machines = 0.0, 0, 0, set()
    for eid in manifest(profile)["entries"]:
        entry = paths.archive_dir(profile) / ENTRIES / eid
        computed = read_entry(entry, ENTRY_FILE).get("computed") or {}
        if computed.get("wall_seconds") is None:
            uncounted += 1
            continue
        seconds += float(computed["wall_seconds"]) + float(_metrics(entry).get("eval_seconds") or 0.0)
        counted += 1
        machines.add(machine_line(computed))
    return {"profile": profile, "seconds": seconds, "runs": counted, "without_seconds": uncounted,
            "computed": sorted(machines)}


# --------------------------------------------------------------------------- the record
def summary(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts the page's first sentence states."""
    compared = [r for r in rows if r["status"] == COMPARED]
    agreements = [r["label_agreement"] for r in compared]
    return {"compared": len(compared), "identical": sum(a == 1.0 for a in agreements),
            "lowest_agreement": min(agreements) if agreements else None,
            "same_setting": all(r["same_setting"] for r in compared) if compared else None,
            "unexpected": sum(r["same_setting"] and r["label_agreement"] < 1.0 for r in compared),
            "not_compared": len(rows) - len(compared),
            "conclusions": len(pairs), "same_conclusions": sum(p["same"] for p in pairs)}


def compare_profile(profile: str) -> dict[str, Any]:
    """Compare the reproduced tree of ``profile`` with ``archive/<profile>``; write and return the record."""
    from ..core.archive import manifest

    stamp_file = paths.reproduced_dir(profile) / paths.STAMP
    if not stamp_file.is_file():
        raise ReproductionError(f"no complete retraining of profile {profile} in {paths.reproduced_dir(profile)}: run "
                                f"`make reproduce PROFILE={profile}` (python -m lora_agnews reproduce --profile "
                                f"{profile}) first.")
    if not manifest(profile)["entries"]:
        raise ReproductionError(f"{paths.archive_dir(profile)} holds no archived run, so there is nothing to compare "
                                f"with: archive the profile first (python -m lora_agnews archive --profile {profile}).")
    stamp = read_json(stamp_file)
    rows = compare_runs(profile)
    archived, note = archived_studies(profile)
    pairs = pair_conclusions(conclusions(archived), conclusions(retrained_studies(profile)))
    record = {"profile": profile, "results_format": paths.RESULTS_FORMAT, "overrides": stamp.get("overrides", {}),
              "compared_at": runs.now(), "retrained": stamp.get("finished"), "retrain_seconds": stamp.get("seconds"),
              "machine": hardware.machine(), "git_commit": runs.git_commit(),
              "reproduced_dir": f"results/{paths.REPRODUCED}/{profile}", "archive": f"archive/{profile}",
              "summary": summary(rows, pairs), "runs": rows, "conclusions": pairs, "studies_note": note,
              "differences": differences(rows), "cost": archived_cost(profile)}
    write_json(record, paths.reproduction_path(profile))
    return record


def read_reproduction(profile: str) -> dict[str, Any] | None:
    """The profile's reproduction record, or None where ``reproduce`` has not run."""
    path = paths.reproduction_path(profile)
    return read_json(path) if path.is_file() else None
