"""The audit: every saved model behind a reported number, reloaded and re-scored, agrees with what was recorded.

A number is a result only if its artifact gives it again. :func:`audit_profile` finds, under
``results/<profile>/``, every complete run with a saved adapter (the main run, the seed study, the ablation
grid, the quantized runs, the multi-label run, each merging task's own adapter) and re-scores its test rows from the adapter
alone, through the path the run scored with (:func:`lora_agnews.core.score.scoring_model`, the run's batch size
and precision); it re-merges the merging study's task adapters and re-scores every merged combination; it
rebuilds the study's head-only floor and multi-task model from their records and saved trained tensors
(:mod:`lora_agnews.studies.multitask`: the frozen base rebuilt as at training, the head or LoRA factors and heads put
back) and re-scores them through the code that scored them. Each record says where and in what precision it was
computed; the model is re-scored in that precision where this machine computes it natively, else in fp32 (the
fastest faithful one), and :mod:`.agreement`'s rule decides: exact on the same machine kind and precision, within
numerical noise (labels may differ on near-ties only) across machines. Models restored from the archive were
audited in full where they were computed (the archive keeps that audit); here the main run and the merging study's
own adapters are re-scored in full and the rest on a seeded sample of rows (``audit --full``: every row).
The TF-IDF baseline is refitted (deterministic) and its accuracy and macro F1 must equal
``reference.json``'s exactly (that record keeps no per-row predictions). ``python -m lora_agnews audit`` runs
it in its own process (the pipeline runs that command between the notebooks and the book), so nothing cached
by training can make a run agree with itself.
"""

from __future__ import annotations

import fnmatch
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import hardware, paths, runs
from ..core.paths import read_json, say, write_json
from .agreement import CROSS_TOLERANCE, EXACT_TOLERANCE, Agreement, Setting, agree, threshold_logits

# Torch and the model code are imported inside the functions that re-score: the book's and the findings' readers of
# this module's records (summary, read_audit) stay torch-free and start in a fraction of a second.

AUDIT_FILE = "audit.json"
VERIFY_FILE = "archive_verify.json"  # archive --verify N: archived runs retrained and compared
NOT_AUDITED = ("the TF-IDF baseline row by row: reference.json keeps its accuracy and macro F1, not its predictions, "
               "so the refitted baseline is compared on those, exactly",)
REFERENCE_FILE = "reference.json"  # the TF-IDF baseline's record (notebook 03)
# On a restore the archive's own audit, made where the runs were computed, re-scored every saved model in full
# (archive/<profile>/studies/audit.json). Here the main run and the merging study's own adapters (the references
# every merge is read against) are re-scored in full, every other restored model on this many rows drawn at
# random (seeded by its name): the cost of a restore stays minutes on a laptop. ``audit --full``: every row.
SAMPLE_ROWS = 100
IN_FULL = ("runs/main", "runs/merging/tasks/*")
# Re-merging is the dearest check (every merge re-reads and combines all task adapters; on a roberta-base-shaped
# encoder in fp32 on 2 AVX2 cores the seven merges took most of a 14-minute audit), so a restore re-merges this many of
# the study's merge methods, drawn at random (seeded by the study's methods); the others keep the archived scores,
# which the computing sitting's full audit re-merged. ``audit --full``: every merge.
SAMPLE_MERGES = 2


class AuditError(paths.ProjectError):
    """A saved model does not give the number recorded for it; the message names each such run."""


@dataclass
class Check:
    """One re-scored model: its rows, both settings, and how far its logits are from the recorded ones."""

    run: str  # the run directory relative to results/<profile>, or "merging: <task> / <method>"
    n_test: int  # rows re-scored here
    n_total: int  # rows the model recorded
    recorded_accuracy: float  # on the rows re-scored
    reproduced_accuracy: float
    label_agreement: float
    max_abs_logit_diff: float
    precision: str  # re-scored in
    computed: str  # where and in what it was computed: "AMX (bf16)"
    here: str  # where and in what it was re-scored
    exact: bool  # the same setting: the exact rule
    tolerance: float
    bound: float  # the near-tie bound (across machines)
    differing: int
    largest_margin: float
    recorded_metric: float | None = None  # the run's metrics.json accuracy, where it keeps one

    @property
    def metric_agrees(self) -> bool:
        return self.recorded_metric is None or self.n_test != self.n_total or \
            abs(self.recorded_metric - self.recorded_accuracy) < 1e-9

    @property
    def reproduced(self) -> bool:
        agreement = Agreement(self.n_test, self.differing, self.largest_margin, self.max_abs_logit_diff, self.exact,
                              self.tolerance, self.bound)
        return agreement.reproduced and self.metric_agrees

    def line(self) -> str:
        sampled = "" if self.n_test == self.n_total else f" (a sample of its {self.n_total})"
        rows = f"{self.n_test} rows{sampled}"
        if not self.metric_agrees:
            return (f"{self.run}: its metrics.json says {100 * self.recorded_metric:.2f}% but its recorded logits give "
                    f"{100 * self.recorded_accuracy:.2f}% on the same rows: the record was changed; rerun it")
        if not self.reproduced:
            return (f"{self.run}: does not reproduce: recorded {100 * self.recorded_accuracy:.2f}%, re-scored "
                    f"{100 * self.reproduced_accuracy:.2f}% (computed {self.computed}, re-scored {self.here}); "
                    f"{self.differing} of {self.n_test} labels differ{sampled}" +
                    (f", largest recorded margin among them {self.largest_margin:.3g}" if self.differing else "") +
                    (f" (near-tie bound {self.bound:g})" if self.bound else "") +
                    f"; max |logit diff| {self.max_abs_logit_diff:.2e} (tolerance {self.tolerance:g})")
        differ = (f"; the {self.differing} that differ all near-ties (largest margin {self.largest_margin:.3g} < "
                  f"{self.bound:g})" if self.differing else "")
        if self.exact and not self.differing:
            return f"{self.run}: reproduced exactly ({rows}, {self.here}; max |logit diff| {self.max_abs_logit_diff:.1e})"
        if self.exact:
            return (f"{self.run}: reproduced within the noise of other batches ({self.here}; a sample is batched and "
                    f"padded apart from the rows it was scored with; {self.n_test - self.differing} of {self.n_test} "
                    f"labels identical{sampled}{differ}; max |logit diff| {self.max_abs_logit_diff:.1e} <= "
                    f"{self.tolerance:g})")
        return (f"{self.run}: reproduced within numerical noise (computed {self.computed}, re-scored {self.here}; "
                f"{self.n_test - self.differing} of {self.n_test} labels identical{sampled}{differ}; max |logit diff| "
                f"{self.max_abs_logit_diff:.1e} <= {self.tolerance:g})")


def compare(run: str, recorded: np.ndarray, got: np.ndarray, labels: np.ndarray, computed: Setting, here: Setting,
            thresholds: Any = None, n_total: int | None = None, recorded_metric: float | None = None) -> Check:
    """Recorded against re-scored logits of the same rows (``labels``: their true classes), under the rule of
    :mod:`.agreement` for the two settings.

    A multi-label run (``labels`` an indicator matrix) predicts label sets at its ``thresholds`` (the per-label
    values its run chose on validation): its accuracy is subset accuracy (the whole set right).
    """
    if recorded.shape != got.shape:
        raise AuditError(f"{run}: recorded logits {recorded.shape} but the reloaded model scored {got.shape}: "
                         f"the test rows changed since the run; rerun it.")
    sampled = n_total is not None and n_total != len(labels)
    if np.ndim(labels) == 2:
        cut = np.broadcast_to(np.asarray(thresholds if thresholds is not None else 0.5, dtype=np.float64), recorded.shape)
        truth, at = np.asarray(labels) > 0, threshold_logits(cut, cut.shape)
        before, after = recorded >= at, got >= at
        right = [(before == truth).all(1), (after == truth).all(1), (before == after).all(1)]
        found = agree(recorded, got, computed, here, cut, rebatched=sampled)
    else:
        right = [recorded.argmax(1) == labels, got.argmax(1) == labels, recorded.argmax(1) == got.argmax(1)]
        found = agree(recorded, got, computed, here, rebatched=sampled)
    return Check(run, int(len(labels)), int(n_total if n_total is not None else len(labels)),
                 *(float(r.mean()) for r in right), found.max_abs_logit_diff, here.precision, computed.words(),
                 here.words(), found.exact, found.tolerance, found.bound, found.differing, found.largest_margin,
                 recorded_metric)


# --------------------------------------------------------------------------- where a record was computed
def computed_setting(record: dict[str, Any] | None, precision: str | None, cfg: Any) -> Setting:
    """The machine kind and precision a record was computed in: the archive's provenance for a restored record, the
    run's own record otherwise (this machine where it names none); the precision its metrics name, else the one
    ``auto`` gave on that machine."""
    record = record or {}
    machine = (record[runs.RESTORED].get("computed", {}).get("machine") if runs.RESTORED in record else record.get("machine")) \
        or hardware.machine()
    kind = hardware.kind_of(machine)
    if precision is None:
        precision = cfg.precision if cfg is not None and cfg.precision != "auto" else (
            "bf16" if kind.startswith("GPU") or kind in hardware.BF16_KINDS else "fp32")
    return Setting(kind, precision)


def here_setting(precision: str, device: str) -> Setting:
    import torch

    dev = torch.device(device)
    return Setting(f"GPU {torch.cuda.get_device_name(0)}" if dev.type == "cuda" else hardware.cpu_kind(), precision)


def restored(record: dict[str, Any] | None) -> bool:
    return runs.RESTORED in (record or {})


def sample(name: str, n: int, full: bool) -> np.ndarray | None:
    """The rows of a model re-scored here: all (None) when ``full`` or there are few, else :data:`SAMPLE_ROWS`
    drawn at random, seeded by the model's name so that every audit of these results draws the same."""
    if full or n <= SAMPLE_ROWS:
        return None
    return np.sort(np.random.default_rng(zlib.crc32(name.encode())).choice(n, SAMPLE_ROWS, replace=False))


def _in_full(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in IN_FULL)


def _pick(array: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return array if rows is None else array[rows]


# --------------------------------------------------------------------------- runs with an adapter
def audited_runs(root: Path) -> list[Path]:
    """Complete runs under ``root`` that saved an adapter and their test logits."""
    return [d for d in runs.complete_runs(root)
            if (d / "adapter").is_dir() and (d / "test_predictions.npz").is_file()]


def audit_run(run_dir: Path, root: Path, device: str = "cpu", full: bool = True) -> Check:
    """Re-score one run from its adapter, in the precision :func:`faithful_precision` picks for its record."""
    import torch

    from ..core.config import from_dict
    from ..core.precision import faithful_precision, scoring_in
    from ..core.score import rescore

    name = str(run_dir.relative_to(root))
    record = runs.read_record(run_dir)
    metrics = read_json(run_dir / runs.METRICS_FILE) if (run_dir / runs.METRICS_FILE).is_file() else {}
    cfg = from_dict(record["config"]) if record and "config" in record else None
    computed = computed_setting(record, metrics.get("precision"), cfg)
    precision = faithful_precision(computed.precision, torch.device(device))
    with np.load(run_dir / "test_predictions.npz") as saved:
        recorded, recorded_labels = saved["logits"], saved["labels"]
    rows = sample(name, len(recorded), full or not restored(record) or _in_full(name))
    with scoring_in(precision):
        scored = rescore(run_dir, device, rows=rows)
    if not np.array_equal(_pick(recorded_labels, rows), scored.labels):
        raise AuditError(f"{name}: its test rows are not the ones it recorded (the data changed since the run); "
                         f"rerun it.")
    single = np.ndim(recorded_labels) == 1
    return compare(name, _pick(recorded, rows), scored.logits, scored.labels, computed, here_setting(precision, device),
                   _thresholds(run_dir / "adapter"), len(recorded), metrics.get("accuracy") if single else None)


def _thresholds(adapter_dir: Path) -> list[float] | None:
    """A multi-label adapter's per-label decision thresholds (None: single-label)."""
    from ..core.adapter import adapter_thresholds

    record = adapter_thresholds(adapter_dir)
    return None if record is None else list(record["per_label"])


# --------------------------------------------------------------------------- merged adapters
def audit_merging(results: Path, device: str = "cpu", full: bool = True) -> tuple[list[Check], list[str]]:
    """Re-merge the study's saved task adapters and re-score the merged combinations (none without a study); returns
    the checks and the merged models left to the archived audit (:func:`sample_merges`).

    Merged scores computed here are held to the exact rule in the precision ``auto`` gives here, every one; scores
    restored from the archive (with the task adapters they merge) to the rule for where they were computed, on a
    sample of merges and rows."""
    import torch

    from ..core.config import from_dict
    from ..core.precision import faithful_precision, scoring_in
    from .merging import make_combination, merge_method, score_merged
    from .merging_study import MERGED_LOGITS, MERGED_RECORD, STUDY_FILE as MERGING_FILE, merged_key

    if not (results / MERGED_LOGITS).is_file():
        return [], []
    study = read_json(results / MERGING_FILE)
    # the study's task order, not the settings' mapping (JSON is written with sorted keys): DARE draws its masks
    # and SVD sums the updates in the order the adapters are given
    dirs = [Path(study["settings"]["task_dirs"][t["name"]]) / "adapter" for t in study["tasks"]]
    combos = [make_combination(c["kind"], c["weights"], c["density"], c["svd_rank"], c["seed"])
              for c in study["combinations"]]
    if not combos:
        return [], []
    merged_dir = study["settings"].get("merged_dir")
    merged = read_json(Path(merged_dir) / MERGED_RECORD) if merged_dir and \
        (Path(merged_dir) / MERGED_RECORD).is_file() else None
    with np.load(results / MERGED_LOGITS) as saved:
        recorded = {k: saved[k] for k in saved.files}
    first = merge_method(combos[0])
    rows = [sample(f"merging: {t['name']}", len(recorded[merged_key(t["name"], first)]), full or not restored(merged))
            for t in study["tasks"]]
    cfg = from_dict(read_json(dirs[0] / "lora_agnews_config.json")["config"])
    metrics = read_json(dirs[0].parent / runs.METRICS_FILE) if (dirs[0].parent / runs.METRICS_FILE).is_file() else {}
    if restored(merged):
        computed = computed_setting(merged, metrics.get("precision"), cfg)
        precision = faithful_precision(computed.precision, torch.device(device))
    else:
        from ..core.precision import resolve_precision

        precision = resolve_precision(cfg, torch.device(device))
        computed = here_setting(precision, device)
    here = here_setting(precision, device)
    skipped = []
    if not full and restored(merged):
        combos, skipped = sample_merges(combos)
    with scoring_in(precision):
        all_scores = score_merged(dirs, combos, device, rows=rows)
    checks = []
    for scores, task_rows in zip(all_scores, rows):
        for combo in combos:
            method = merge_method(combo)
            full_logits = recorded[merged_key(scores.name, method)]
            checks.append(compare(f"merging: {scores.name} / {method}", _pick(full_logits, task_rows),
                                  scores.logits[method], scores.y, computed, here,
                                  scores.decision_thresholds() if scores.multi_label else None, len(full_logits)))
    return checks, [f"merging: {t['name']} / {merge_method(c)}" for t in study["tasks"] for c in skipped]


def sample_merges(combos: list[Any]) -> tuple[list[Any], list[Any]]:
    """The merges a restore re-merges (:data:`SAMPLE_MERGES`, drawn at random, seeded by the methods' names, so every
    audit of these results draws the same) and the ones it leaves to the archived full audit, both in study order."""
    from .merging import merge_method  # merging imports torch; this module is read without it

    if len(combos) <= SAMPLE_MERGES:
        return combos, []
    names = ",".join(merge_method(c) for c in combos)
    keep = set(np.random.default_rng(zlib.crc32(names.encode())).choice(len(combos), SAMPLE_MERGES, replace=False))
    return [c for i, c in enumerate(combos) if i in keep], [c for i, c in enumerate(combos) if i not in keep]


# --------------------------------------------------------------------------- the study's floor and multi-task model
def study_model_dirs(results: Path) -> tuple[dict[str, Path], Path | None]:
    """The merging study's head-only runs (by task) and multi-task run that hold a record; none without a study."""
    from .merging_study import STUDY_FILE as MERGING_FILE

    if not (results / MERGING_FILE).is_file():
        return {}, None
    settings = read_json(results / MERGING_FILE)["settings"]
    heads = {n: Path(d) for n, d in settings.get("head_only_dirs", {}).items() if (Path(d) / "head_only.json").is_file()}
    multi = settings.get("multitask_dir")
    return heads, Path(multi) if multi and (Path(multi) / "multitask.json").is_file() else None


def _need_tensors(name: str, run_dir: Path) -> None:
    from .multitask import TRAINABLE_FILE

    if not (run_dir / TRAINABLE_FILE).is_file():
        raise AuditError(f"{name}: {run_dir} keeps no trained tensors ({TRAINABLE_FILE}): it was trained before "
                         f"lora_agnews kept them, so its number cannot be checked. Rerun notebook 05 (the study "
                         f"retrains it).")


def _study_settings(record: dict[str, Any], cfg: Any, device: str) -> tuple[Setting, Setting, str]:
    import torch

    from ..core.precision import faithful_precision

    computed = computed_setting(record, None, cfg)
    precision = faithful_precision(computed.precision, torch.device(device))
    return computed, here_setting(precision, device), precision


def audit_head_only(run_dir: Path, name: str, device: str = "cpu", full: bool = True) -> Check:
    """The head-only floor rebuilt from its record and saved head, re-scored on its test rows."""
    import torch

    from ..core.dataset import load_splits
    from ..core.precision import scoring_in
    from .merging import MergingError
    from .multitask import head_only_logits, load_head_only

    _need_tensors(name, run_dir)
    try:
        model, tokenizer, cfg = load_head_only(run_dir, device)
    except MergingError as exc:
        raise AuditError(f"{name}: {exc}") from None
    record = read_json(run_dir / "head_only.json")
    computed, here, precision = _study_settings(record, cfg, device)
    test = load_splits(cfg).test
    rows = sample(name, len(test), full or not restored(record))
    frame = test if rows is None else test.iloc[rows]
    with scoring_in(precision):
        logits = head_only_logits(model, cfg, tokenizer, frame, torch.device(device))
    labels = frame["label"].to_numpy()
    with np.load(run_dir / "test_predictions.npz") as saved:
        if not np.array_equal(_pick(saved["labels"], rows), labels):
            raise AuditError(f"{name}: its test rows are not the ones it recorded (the data changed since the run); "
                             f"rerun notebook 05.")
        return compare(name, _pick(saved["logits"], rows), logits, labels, computed, here, n_total=len(test))


def audit_multitask(run_dir: Path, device: str = "cpu", full: bool = True) -> list[Check]:
    """The multi-task model rebuilt from its record and saved LoRA factors and heads, each task re-scored."""
    import torch

    from ..core.dataset import load_splits
    from ..core.precision import scoring_in
    from .merging import MULTITASK, MergingError
    from .multitask import load_multitask, multitask_logits

    _need_tensors(f"merging: {MULTITASK}", run_dir)
    try:
        model, tokenizer, cfgs = load_multitask(run_dir, device)
    except MergingError as exc:
        raise AuditError(f"merging: {MULTITASK}: {exc}") from None
    record = read_json(run_dir / "multitask.json")
    names = record["tasks"]
    tests = [load_splits(c).test for c in cfgs]
    picks = [sample(f"merging: {n} / {MULTITASK}", len(t), full or not restored(record)) for n, t in zip(names, tests)]
    frames = [t if r is None else t.iloc[r] for t, r in zip(tests, picks)]
    computed, here, precision = _study_settings(record, cfgs[0], device)
    with scoring_in(precision):
        all_logits = multitask_logits(model, cfgs, frames, tokenizer, torch.device(device))
    checks = []
    with np.load(run_dir / "test_predictions.npz") as saved:
        for i, (name, frame, rows, logits) in enumerate(zip(names, frames, picks, all_logits)):
            labels = frame["label"].to_numpy()
            if not np.array_equal(_pick(saved[f"labels_{i}"], rows), labels):
                raise AuditError(f"merging: {name} / {MULTITASK}: its test rows are not the ones it recorded (the data "
                                 f"changed since the run); rerun notebook 05.")
            checks.append(compare(f"merging: {name} / {MULTITASK}", _pick(saved[f"logits_{i}"], rows), logits, labels,
                                  computed, here, n_total=len(tests[i])))
    return checks


def audit_study_models(results: Path, device: str = "cpu", full: bool = True) -> list[Check]:
    """The study's head-only floor of every task and its multi-task model (none without a study)."""
    from .merging import HEAD_ONLY

    heads, multi = study_model_dirs(results)
    checks = [audit_head_only(d, f"merging: {name} / {HEAD_ONLY}", device, full) for name, d in heads.items()]
    return checks + (audit_multitask(multi, device, full) if multi is not None else [])


# --------------------------------------------------------------------------- the TF-IDF baseline
def audit_baseline(profile: str) -> dict[str, Any] | None:
    """The TF-IDF baseline refitted on the main run's rows and compared with ``reference.json`` (None without one).

    Its record keeps no per-row predictions, so the refit's accuracy, macro F1 and row counts must equal the
    recorded ones exactly (the fit is deterministic: the same rows, the same solver, the same seed).
    """
    from ..core.adapter import CONFIG_FILE
    from .baselines import tfidf_predictions
    from ..core.config import from_dict
    from ..core.dataset import load_splits
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
def audit_profile(profile: str, device: str = "cpu", full: bool = False) -> dict[str, Any]:
    """Audit every saved model of ``profile``, write ``results/<profile>/audit.json`` and return it.

    Models computed in these results are re-scored on every row; models restored from the archive on the sample
    :func:`sample` draws, unless ``full``. Raises :class:`AuditError` (one line per run that does not reproduce,
    after writing the record) so the pipeline stops before the book shows a number its artifact does not give.
    """
    results = paths.results_dir(profile)
    start = time.perf_counter()
    checks = []
    for run_dir in audited_runs(results):
        checks.append(audit_run(run_dir, results, device, full))
        say(f"audit: {checks[-1].line()}")
    merge_checks, not_remerged = audit_merging(results, device, full)
    for check in merge_checks + audit_study_models(results, device, full):
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
              "rows": sum(c.n_test for c in checks), "rows_recorded": sum(c.n_total for c in checks),
              "seconds": round(time.perf_counter() - start, 1), "full": full, "sample_rows": SAMPLE_ROWS,
              "tolerance": {"exact": EXACT_TOLERANCE, "across machines": CROSS_TOLERANCE},
              "not_audited": list(NOT_AUDITED), "checked_at": runs.now(), "device": device,
              "machine": hardware.machine(), "settings": settings_summary(checks), "computed_on": computed_on(results),
              "audited_where_computed": archived_audit(profile, results),
              "restored_without_adapter": without, "not_remerged": not_remerged,
              "checks": [asdict(c) | {"reproduced": c.reproduced, "line": c.line()} for c in checks]}
    write_json(record, results / AUDIT_FILE)
    if failed or baseline_failed:
        what = ([f"{len(failed)} of {len(checks)} saved models do not reproduce their recorded test scores"] if failed
                else []) + (["the refitted TF-IDF baseline does not give its recorded numbers"] if baseline_failed else [])
        raise AuditError("; ".join(what) + ":\n"
                         + "\n".join([c.line() for c in failed] + ([baseline_line(baseline)] if baseline_failed else [])))
    return record


def settings_summary(checks: list[Check]) -> dict[str, Any]:
    """Where the re-scored models were computed and re-scored, and what the labels did: the page's one sentence."""
    differ = [c for c in checks if c.differing]
    return {"computed": sorted({c.computed for c in checks}), "here": sorted({c.here for c in checks}),
            "exact": sum(c.exact for c in checks), "across_machines": sum(not c.exact for c in checks),
            "labels": sum(c.n_test for c in checks), "identical": sum(c.n_test - c.differing for c in checks),
            "differing": sum(c.differing for c in checks),
            "largest_margin": max((c.largest_margin for c in differ), default=0.0),
            "bound": max((c.bound for c in checks if not c.exact), default=0.0),
            "sampled": sum(c.n_test < c.n_total for c in checks)}


def computed_on(results: Path) -> list[str]:
    """``<date> on <CPU model> (<kind>)`` for each place the restored runs of these results were computed."""
    seen = set()
    for d in runs.complete_runs(results):
        computed = (runs.read_record(d) or {}).get(runs.RESTORED, {}).get("computed")
        if computed:
            m = computed.get("machine") or {}
            seen.add(f"{str(computed.get('date', 'unknown'))[:10]} on {m.get('cpu', 'unknown')} ({hardware.kind_of(m)})")
    return sorted(seen)


def archived_audit(profile: str, results: Path) -> dict[str, Any] | None:
    """The audit made where the archived runs were computed (kept in the archive), where these results restored any."""
    path = paths.archive_dir(profile) / "studies" / AUDIT_FILE
    if not path.is_file() or not computed_on(results):
        return None
    kept = read_json(path)
    return {k: kept.get(k) for k in ("runs", "reproduced", "rows", "checked_at", "seconds", "all_reproduced")}


def restored_without_adapter(results: Path) -> list[str]:
    """Complete runs restored from the archive without an adapter (their logits only): the audit cannot re-score
    them, so it names them; ``archive --verify N`` retrains a sample from their recorded configuration instead."""
    return [str(d.relative_to(results)) for d in runs.complete_runs(results)
            if not (d / "adapter").is_dir() and runs.RESTORED in (runs.read_record(d) or {})]


def read_audit(profile: str) -> dict[str, Any] | None:
    """The profile's audit record, or None where the audit has not run."""
    path = paths.results_dir(profile) / AUDIT_FILE
    return read_json(path) if path.is_file() else None
