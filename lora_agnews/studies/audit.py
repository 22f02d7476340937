"""The audit: every saved model behind a reported number, reloaded and re-scored, agrees with what was recorded.

A number is a result only if its artifact gives it again. :func:`audit_profile` finds, under
``results/<profile>/``, every complete run with a saved adapter (the main run, the seed study, the ablation
grid, the quantized runs, the multi-label run, each merging task's own adapter) and re-scores its test rows from the adapter
alone, through the path the run scored with (:func:`lora_agnews.core.train.scoring_model`, the run's batch size
and precision); it re-merges the merging study's task adapters and re-scores every merged combination; it
rebuilds the study's head-only floor and multi-task model from their records and saved trained tensors
(:mod:`lora_agnews.studies.multitask`: the frozen base rebuilt as at training, the head or LoRA factors and heads put
back) and re-scores them through the code that scored them. Each is compared with the logits the run
recorded: the predicted labels must be identical and the largest logit difference within :data:`TOLERANCE`
for the precision. The TF-IDF baseline is refitted (deterministic) and its accuracy and macro F1 must equal
``reference.json``'s exactly (that record keeps no per-row predictions). ``python -m lora_agnews audit`` runs
it in its own process (the pipeline runs that command between the notebooks and the book), so nothing cached
by training can make a run agree with itself.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import paths, runs
from ..core.paths import read_json, say, write_json

AUDIT_FILE = "audit.json"
VERIFY_FILE = "archive_verify.json"  # archive --verify N: archived runs retrained and compared
# Largest |logit difference| accepted for the same computation repeated in another process: fp32 differs only by
# the order of a reduction, bf16/fp16 autocast by a rounding of its 8- or 11-bit mantissa in some matmul.
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 5e-2}
NOT_AUDITED = ("the TF-IDF baseline row by row: reference.json keeps its accuracy and macro F1, not its predictions, "
               "so the refitted baseline is compared on those, exactly",)
REFERENCE_FILE = "reference.json"  # the TF-IDF baseline's record (notebook 03)


class AuditError(paths.ProjectError):
    """A saved model does not give the number recorded for it; the message names each such run."""


@dataclass
class Check:
    """One re-scored model: how far its logits are from the recorded ones."""

    run: str  # the run directory relative to results/<profile>, or "merging: <task> / <method>"
    n_test: int
    recorded_accuracy: float
    reproduced_accuracy: float
    label_agreement: float
    max_abs_logit_diff: float
    precision: str
    tolerance: float

    @property
    def reproduced(self) -> bool:
        return self.label_agreement == 1.0 and self.max_abs_logit_diff <= self.tolerance

    def line(self) -> str:
        return (f"{self.run}: recorded {100 * self.recorded_accuracy:.2f}%, reloaded {100 * self.reproduced_accuracy:.2f}% "
                f"({100 * self.label_agreement:.2f}% of {self.n_test} labels agree, max |logit diff| "
                f"{self.max_abs_logit_diff:.2e} > {self.tolerance:g})" if not self.reproduced else
                f"{self.run}: reproduced ({self.n_test} rows, max |logit diff| {self.max_abs_logit_diff:.1e})")


def compare(run: str, recorded: np.ndarray, got: np.ndarray, labels: np.ndarray, precision: str,
            thresholds: Any = None) -> Check:
    """Recorded against re-scored logits of the same rows (``labels``: their true classes).

    A multi-label run (``labels`` an indicator matrix) predicts label sets at its ``thresholds`` (the per-label
    values its run chose on validation): its predictions must be the same sets, and its accuracy is subset
    accuracy (the whole set right), the per-row outcome a set has.
    """
    if recorded.shape != got.shape:
        raise AuditError(f"{run}: recorded logits {recorded.shape} but the reloaded model scored {got.shape}: "
                         f"the test rows changed since the run; rerun it.")
    if np.ndim(labels) == 2:
        from ..core.data import apply_thresholds, sigmoid

        def decide(logits: np.ndarray) -> np.ndarray:
            return apply_thresholds(sigmoid(logits), thresholds if thresholds is not None else 0.5)

        truth = np.asarray(labels) > 0
        before, after = decide(recorded) > 0, decide(got) > 0
        right = [(before == truth).all(1), (after == truth).all(1), (before == after).all(1)]
    else:
        right = [recorded.argmax(1) == labels, got.argmax(1) == labels, recorded.argmax(1) == got.argmax(1)]
    return Check(run, int(len(labels)), *(float(r.mean()) for r in right),
                 float(np.abs(recorded - got).max()) if got.size else 0.0, precision, TOLERANCE.get(precision, 1e-4))


# --------------------------------------------------------------------------- runs with an adapter
def audited_runs(root: Path) -> list[Path]:
    """Complete runs under ``root`` that saved an adapter and their test logits."""
    return [d for d in runs.complete_runs(root)
            if (d / "adapter").is_dir() and (d / "test_predictions.npz").is_file()]


def audit_run(run_dir: Path, root: Path, device: str = "cpu") -> Check:
    name = str(run_dir.relative_to(root))
    from ..core.train import rescore

    scored = rescore(run_dir, device)
    logits, labels, precision = scored.logits, scored.labels, scored.precision
    with np.load(run_dir / "test_predictions.npz") as saved:
        if not np.array_equal(saved["labels"], labels):
            raise AuditError(f"{name}: its test rows are not the ones it recorded (the data changed since the run); "
                             f"rerun it.")
        return compare(name, saved["logits"], logits, labels, precision, _thresholds(run_dir / "adapter"))


def _thresholds(adapter_dir: Path) -> list[float] | None:
    """A multi-label adapter's per-label decision thresholds (None: single-label)."""
    from ..core.adapter import adapter_thresholds

    record = adapter_thresholds(adapter_dir)
    return None if record is None else list(record["per_label"])


# --------------------------------------------------------------------------- merged adapters
def audit_merging(results: Path, device: str = "cpu") -> list[Check]:
    """Re-merge the study's saved task adapters and re-score every merged combination (none without a study)."""
    import torch

    from ..core.config import from_dict
    from .merging import make_combination, merge_method, score_merged
    from ..core.model import resolve_precision
    from .merging_study import MERGED_LOGITS, STUDY_FILE, merged_key

    if not (results / MERGED_LOGITS).is_file():
        return []
    study = read_json(results / STUDY_FILE)
    # the study's task order, not the settings' mapping (JSON is written with sorted keys): DARE draws its masks
    # and SVD sums the updates in the order the adapters are given
    dirs = [Path(study["settings"]["task_dirs"][t["name"]]) / "adapter" for t in study["tasks"]]
    combos = [make_combination(c["kind"], c["weights"], c["density"], c["svd_rank"], c["seed"])
              for c in study["combinations"]]
    checks = []
    with np.load(results / MERGED_LOGITS) as saved:
        for adapter, scores in zip(dirs, score_merged(dirs, combos, device)):
            cfg = from_dict(read_json(adapter / "lora_agnews_config.json")["config"])
            precision = resolve_precision(cfg, torch.device(device))
            for combo in combos:
                method = merge_method(combo)
                checks.append(compare(f"merging: {scores.name} / {method}", saved[merged_key(scores.name, method)],
                                      scores.logits[method], scores.y, precision,
                                      scores.decision_thresholds() if scores.multi_label else None))
    return checks


# --------------------------------------------------------------------------- the study's floor and multi-task model
def study_model_dirs(results: Path) -> tuple[dict[str, Path], Path | None]:
    """The merging study's head-only runs (by task) and multi-task run that hold a record; none without a study.

    A study written before its settings named them keeps them beside its task runs (``OUT/head_only/<task>``,
    ``OUT/multitask``)."""
    from .merging_study import STUDY_FILE

    if not (results / STUDY_FILE).is_file():
        return {}, None
    settings = read_json(results / STUDY_FILE)["settings"]
    out = {Path(d).parent.parent for d in settings.get("task_dirs", {}).values()}
    out_dir = next(iter(out)) if len(out) == 1 else None
    heads = settings.get("head_only_dirs")
    if heads is None:
        heads = {n: out_dir / "head_only" / n for n in settings.get("task_dirs", {})} if out_dir else {}
    multi = settings.get("multitask_dir", str(out_dir / "multitask") if out_dir else None)
    heads = {n: Path(d) for n, d in heads.items() if (Path(d) / "head_only.json").is_file()}
    multi = Path(multi) if multi and (Path(multi) / "multitask.json").is_file() else None
    return heads, multi


def _need_tensors(name: str, run_dir: Path) -> None:
    from .multitask import TRAINABLE_FILE

    if not (run_dir / TRAINABLE_FILE).is_file():
        raise AuditError(f"{name}: {run_dir} keeps no trained tensors ({TRAINABLE_FILE}): it was trained before "
                         f"lora_agnews kept them, so its number cannot be checked. Rerun notebook 05 (the study "
                         f"retrains it).")


def audit_head_only(run_dir: Path, name: str, device: str = "cpu") -> Check:
    """The head-only floor rebuilt from its record and saved head, re-scored on its test rows."""
    import torch

    from ..core.data import load_splits
    from .merging import MergingError
    from ..core.model import resolve_precision
    from .multitask import head_only_logits, load_head_only

    _need_tensors(name, run_dir)
    try:
        model, tokenizer, cfg = load_head_only(run_dir, device)
    except MergingError as exc:
        raise AuditError(f"{name}: {exc}") from None
    test = load_splits(cfg).test
    dev = torch.device(device)
    logits = head_only_logits(model, cfg, tokenizer, test, dev)
    labels = test["label"].to_numpy()
    with np.load(run_dir / "test_predictions.npz") as saved:
        if not np.array_equal(saved["labels"], labels):
            raise AuditError(f"{name}: its test rows are not the ones it recorded (the data changed since the run); "
                             f"rerun notebook 05.")
        return compare(name, saved["logits"], logits, labels, resolve_precision(cfg, dev))


def audit_multitask(run_dir: Path, device: str = "cpu") -> list[Check]:
    """The multi-task model rebuilt from its record and saved LoRA factors and heads, each task re-scored."""
    import torch

    from ..core.data import load_splits
    from .merging import MULTITASK, MergingError
    from ..core.model import resolve_precision
    from .multitask import load_multitask, multitask_logits

    _need_tensors(f"merging: {MULTITASK}", run_dir)
    try:
        model, tokenizer, cfgs = load_multitask(run_dir, device)
    except MergingError as exc:
        raise AuditError(f"merging: {MULTITASK}: {exc}") from None
    names = read_json(run_dir / "multitask.json")["tasks"]
    tests = [load_splits(c).test for c in cfgs]
    dev = torch.device(device)
    checks = []
    with np.load(run_dir / "test_predictions.npz") as saved:
        for i, (name, c, test, logits) in enumerate(zip(names, cfgs, tests,
                                                         multitask_logits(model, cfgs, tests, tokenizer, dev))):
            labels = test["label"].to_numpy()
            if not np.array_equal(saved[f"labels_{i}"], labels):
                raise AuditError(f"merging: {name} / {MULTITASK}: its test rows are not the ones it recorded (the data "
                                 f"changed since the run); rerun notebook 05.")
            checks.append(compare(f"merging: {name} / {MULTITASK}", saved[f"logits_{i}"], logits, labels,
                                  resolve_precision(c, dev)))
    return checks


def audit_study_models(results: Path, device: str = "cpu") -> list[Check]:
    """The study's head-only floor of every task and its multi-task model (none without a study)."""
    from .merging import HEAD_ONLY

    heads, multi = study_model_dirs(results)
    checks = [audit_head_only(d, f"merging: {name} / {HEAD_ONLY}", device) for name, d in heads.items()]
    return checks + (audit_multitask(multi, device) if multi is not None else [])


# --------------------------------------------------------------------------- the TF-IDF baseline
def audit_baseline(profile: str) -> dict[str, Any] | None:
    """The TF-IDF baseline refitted on the main run's rows and compared with ``reference.json`` (None without one).

    Its record keeps no per-row predictions, so the refit's accuracy, macro F1 and row counts must equal the
    recorded ones exactly (the fit is deterministic: the same rows, the same solver, the same seed).
    """
    from ..core.adapter import CONFIG_FILE
    from .baselines import tfidf_predictions
    from ..core.config import from_dict
    from ..core.data import load_splits
    from ..core.evaluate import compute_metrics

    path = paths.results_dir(profile) / REFERENCE_FILE
    if not path.is_file():
        return None
    recorded = read_json(path)
    run_config = paths.runs_dir(profile) / "main" / "adapter" / CONFIG_FILE
    if not run_config.is_file():
        raise AuditError(f"the TF-IDF baseline: {path} was fitted on the main run's rows, but {run_config} is missing; "
                         f"rerun notebooks 02 and 03.")
    cfg = from_dict(read_json(run_config)["config"])
    splits = load_splits(cfg)
    labels = splits.test["label"].to_numpy()
    metrics = compute_metrics(labels, tfidf_predictions(splits, cfg.seed), names=splits.labels)
    refitted = {"accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"]),
                "n_train": len(splits.train), "n_eval": int(len(labels))}
    mine = {k: recorded.get(k) for k in refitted}
    return {"name": recorded.get("name", "TF-IDF"), "recorded": mine, "refitted": refitted,
            "compared": "accuracy, macro F1 and row counts, exactly (reference.json keeps no per-row predictions)",
            "reproduced": mine == refitted}


def baseline_line(baseline: dict[str, Any]) -> str:
    r, f = baseline["recorded"], baseline["refitted"]
    if baseline["reproduced"]:
        return f"TF-IDF baseline: refitted, accuracy {100 * f['accuracy']:.2f}% and macro F1 exactly as recorded"
    return (f"TF-IDF baseline: recorded accuracy {r['accuracy']} / macro F1 {r['macro_f1']} on {r['n_eval']} rows, "
            f"refitted {f['accuracy']} / {f['macro_f1']} on {f['n_eval']} rows")


# --------------------------------------------------------------------------- the profile
def audit_profile(profile: str, device: str = "cpu") -> dict[str, Any]:
    """Audit every saved model of ``profile``, write ``results/<profile>/audit.json`` and return it.

    Raises :class:`AuditError` (one line per run that does not reproduce, after writing the record) so the
    pipeline stops before the book shows a number its artifact does not give.
    """

    results = paths.results_dir(profile)
    start = time.perf_counter()
    checks = []
    for run_dir in audited_runs(results):
        checks.append(audit_run(run_dir, results, device))
        say(f"audit: {checks[-1].line()}")
    for check in audit_merging(results, device) + audit_study_models(results, device):
        checks.append(check)
        say(f"audit: {check.line()}")
    baseline = audit_baseline(profile)
    if baseline is not None:
        say(f"audit: {baseline_line(baseline)}")
    without = restored_without_adapter(results)
    for name in without:
        say(f"audit: {name}: restored from the archive without its adapter, not re-scored (archive --verify retrains)")
    failed = [c for c in checks if not c.reproduced]
    baseline_failed = baseline is not None and not baseline["reproduced"]
    record = {"profile": profile, "runs": len(checks), "reproduced": len(checks) - len(failed),
              "all_reproduced": not failed and not baseline_failed, "baseline": baseline,
              "largest_abs_logit_diff": max((c.max_abs_logit_diff for c in checks), default=0.0),
              "rows": sum(c.n_test for c in checks), "seconds": round(time.perf_counter() - start, 1),
              "tolerance": TOLERANCE, "not_audited": list(NOT_AUDITED), "checked_at": runs.now(),
              "device": device, "restored_without_adapter": without, "checks": [asdict(c) | {"reproduced": c.reproduced} for c in checks]}
    write_json(record, results / AUDIT_FILE)
    if failed or baseline_failed:
        what = ([f"{len(failed)} of {len(checks)} saved models do not reproduce their recorded test scores"] if failed
                else []) + (["the refitted TF-IDF baseline does not give its recorded numbers"] if baseline_failed else [])
        raise AuditError("; ".join(what) + ":\n"
                         + "\n".join([c.line() for c in failed] + ([baseline_line(baseline)] if baseline_failed else [])))
    return record


def restored_without_adapter(results: Path) -> list[str]:
    """Complete runs restored from the archive without an adapter (their logits only): the audit cannot re-score
    them, so it names them; ``archive --verify N`` retrains a sample from their recorded configuration instead."""
    from ..core.train import RESTORED

    return [str(d.relative_to(results)) for d in runs.complete_runs(results)
            if not (d / "adapter").is_dir() and RESTORED in (runs.read_record(d) or {})]


# --------------------------------------------------------------------------- the archive, retrained
def verify_archive(profile: str, n: int, seed: int = 0) -> dict[str, Any]:
    """Retrain ``n`` archived runs, drawn with ``seed``, from their recorded configuration; compare predictions.

    The same CPU kind (or GPU) must give identical labels; another kind may round differently in the last
    bits, so there the agreement rate is stated, not required. Writes ``results/<profile>/archive_verify.json``.
    Raises :class:`AuditError` when a run of the same kind disagrees.
    """
    import random

    from ..core.config import from_dict
    from ..core.train import ENTRIES, manifest, train

    if n < 1:
        raise AuditError(f"--verify {n}: give the number of archived runs to retrain (1 or more).")
    entries = {eid: e for eid, e in manifest(profile)["entries"].items() if e.get("kind") == "run"}
    if not entries:
        raise AuditError(f"{paths.archive_dir(profile)} holds no archived run; archive one first "
                         f"(python -m lora_agnews archive --profile {profile}).")
    here = runs.machine()
    checks = []
    for eid in random.Random(seed).sample(sorted(entries), min(n, len(entries))):
        checks.append(_verify_entry(paths.archive_dir(profile) / ENTRIES / eid, here, train, from_dict))
        say(f"verify: {checks[-1]['line']}")
    record = {"profile": profile, "checked_at": runs.now(), "machine": here, "seed": seed, "checks": checks,
              "all_identical_where_expected": all(c["ok"] for c in checks)}
    write_json(record, paths.results_dir(profile) / VERIFY_FILE)
    bad = [c["line"] for c in checks if not c["ok"]]
    if bad:
        raise AuditError("archived runs retrained on the same CPU kind do not give their recorded labels:\n"
                         + "\n".join(bad))
    return record


def _verify_entry(entry: Path, here: dict[str, str], train: Any, from_dict: Any) -> dict[str, Any]:
    import tempfile

    from ..core.train import ENTRY_FILE, identity, read_entry

    info = read_json(entry / ENTRY_FILE)
    cfg = from_dict(read_entry(entry, runs.RUN_FILE)["config"])  # the data's path as this checkout has it
    if identity(runs.run_key(cfg)) != info["identity"]:
        raise AuditError(f"{info['path']}: its recorded configuration no longer gives the archived key (the data or "
                         f"the code's data format changed), so it cannot be retrained as it was.")
    with tempfile.TemporaryDirectory(prefix="lora-agnews-verify-") as tmp:
        train(cfg, Path(tmp) / "run")
        with np.load(Path(tmp) / "run" / "test_predictions.npz") as new, \
                np.load(entry / "test_predictions.npz") as old:
            agreement = float((new["logits"].argmax(1) == old["logits"].argmax(1)).mean())
            diff = float(np.abs(new["logits"] - old["logits"]).max()) if new["logits"].shape == old["logits"].shape \
                else float("inf")
    then = info["computed"].get("machine") or {}
    same = then.get("cpu_kind") == here["cpu_kind"] and then.get("gpu") == here["gpu"]
    kinds = f"{then.get('cpu_kind', 'unknown')}/{then.get('gpu', 'unknown')} -> {here['cpu_kind']}/{here['gpu']}"
    line = (f"{info['path']}: {100 * agreement:.2f}% of labels agree, max |logit diff| {diff:.1e} "
            f"({'same' if same else 'other'} machine kind: {kinds})")
    return {"path": info["path"], "id": entry.name, "label_agreement": agreement, "max_abs_logit_diff": diff,
            "same_kind": same, "ok": agreement == 1.0 or not same, "line": line}


def verify_sentence(record: dict[str, Any]) -> str:
    """``archive --verify``'s result in one sentence: how many archived runs were retrained where, and whether
    the same machine kind gave the same labels."""
    checks = record["checks"]
    same = [c for c in checks if c["same_kind"]]
    other = [c for c in checks if not c["same_kind"]]
    machine = record["machine"]
    text = (f"{len(checks)} archived run(s) drawn at random (seed {record['seed']}) were retrained from their recorded "
            f"configuration on {machine.get('cpu', 'a CPU')} ({machine['cpu_kind']}, GPU: {machine['gpu']}) on "
            f"{record['checked_at'][:10]}.")
    if same:
        identical = sum(c["label_agreement"] == 1.0 for c in same)
        text += (f" Of the {len(same)} computed on this machine kind, {identical} gave identical labels (largest logit "
                 f"difference {max(c['max_abs_logit_diff'] for c in same):.1e}).")
    if other:
        text += (f" {len(other)} were computed on another kind: {min(c['label_agreement'] for c in other):.2%} of "
                 f"labels or more agree there (rounding may differ between kinds; stated, not required).")
    return text


def read_audit(profile: str) -> dict[str, Any] | None:
    """The profile's audit record, or None where the audit has not run."""
    path = paths.results_dir(profile) / AUDIT_FILE
    return read_json(path) if path.is_file() else None


def summary(record: dict[str, Any] | None) -> str:
    """One sentence for the book and the report."""
    if record is None:
        return "The audit has not run on these results."
    baseline = record.get("baseline")
    without = record.get("restored_without_adapter") or []
    if without:
        note = (f" {len(without)} more run(s), restored from the archive without their adapters, were not re-scored "
                f"(`archive --verify` retrains a sample of them).")
    else:
        note = ""
    if record["all_reproduced"]:
        whose = "with an adapter here" if without else "behind these numbers"
        return (f"All {record['runs']} saved models {whose}, reloaded in a fresh process and re-scored on "
                f"their {record['rows']:,} test rows, reproduce their recorded predictions (largest logit difference "
                f"{record['largest_abs_logit_diff']:.1e}; audit {record['seconds']:.0f} s)."
                + (" The TF-IDF baseline, refitted, gives its recorded accuracy and macro F1 exactly." if baseline else "")
                + note)
    if record["reproduced"] == record["runs"]:
        return "The refitted TF-IDF baseline does not give its recorded accuracy."
    return f"{record['runs'] - record['reproduced']} of {record['runs']} saved models do not reproduce their numbers."
