"""The audit: every saved model behind a reported number, reloaded and re-scored, agrees with what was recorded.

A number is a result only if its artifact gives it again. :func:`audit_profile` finds, under
``results/<profile>/``, every complete run with a saved adapter (the main run, the seed study, the ablation
grid, the quantized runs, each merging task's own adapter) and re-scores its test rows from the adapter
alone, through the path the run scored with (:func:`lora_agnews.train.scoring_model`, the run's batch size
and precision); it re-merges the merging study's task adapters and re-scores every merged combination. Each
is compared with the logits the run recorded: the predicted labels must be identical and the largest logit
difference within :data:`TOLERANCE` for the precision. ``python -m lora_agnews audit`` runs it in its own
process (the pipeline runs that command between the notebooks and the book), so nothing cached by training
can make a run agree with itself.

Not audited, and said so in the audit's record: the merging study's head-only floor and multi-task model
(their trained weights are not kept) and the TF-IDF baseline (refitted in a second, deterministic).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import paths, runs
from .artifacts import read_json, write_json

AUDIT_FILE = "audit.json"
# Largest |logit difference| accepted for the same computation repeated in another process: fp32 differs only by
# the order of a reduction, bf16/fp16 autocast by a rounding of its 8- or 11-bit mantissa in some matmul.
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 5e-2}
NOT_AUDITED = ("the merging study's head-only floor and multi-task model (their weights are not kept)",
               "the TF-IDF baseline (refitted in the notebook, deterministic)")


class AuditError(RuntimeError):
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


def compare(run: str, recorded: np.ndarray, got: np.ndarray, labels: np.ndarray, precision: str) -> Check:
    """Recorded against re-scored logits of the same rows (``labels``: their true classes)."""
    if recorded.shape != got.shape:
        raise AuditError(f"{run}: recorded logits {recorded.shape} but the reloaded model scored {got.shape}: "
                         f"the test rows changed since the run; rerun it.")
    return Check(run, int(len(labels)), float((recorded.argmax(1) == labels).mean()),
                 float((got.argmax(1) == labels).mean()), float((recorded.argmax(1) == got.argmax(1)).mean()),
                 float(np.abs(recorded - got).max()) if got.size else 0.0, precision, TOLERANCE.get(precision, 1e-4))


# --------------------------------------------------------------------------- runs with an adapter
def audited_runs(root: Path) -> list[Path]:
    """Complete runs under ``root`` that saved an adapter and their test logits."""
    return [d for d in runs.complete_runs(root)
            if (d / "adapter").is_dir() and (d / "test_predictions.npz").is_file()]


def rescore_run(run_dir: Path | str, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, str]:
    """The run's test logits from its saved adapter alone: ``(logits, labels, precision)``.

    The test rows are loaded again from the run's configuration and scored as the run scored them.
    """
    import torch

    from .adapter import load_adapter
    from .data import encode, load_splits
    from .evaluate import predict_logits
    from .model import resolve_precision
    from .train import scoring_model

    model, tokenizer, cfg = load_adapter(Path(run_dir) / "adapter", device)
    splits = load_splits(cfg)
    test = encode(splits.test, tokenizer, cfg.max_length)
    dev = torch.device(device)
    precision = resolve_precision(cfg, dev)
    model = scoring_model(model, cfg, quiet=True).to(dev).eval()
    logits = predict_logits(model, test, tokenizer.pad_token_id, cfg.eval_batch_size, dev, precision,
                            multiple=cfg.pad_multiple)
    return logits, np.asarray(test.labels), precision


def audit_run(run_dir: Path, root: Path, device: str = "cpu") -> Check:
    name = str(run_dir.relative_to(root))
    logits, labels, precision = rescore_run(run_dir, device)
    with np.load(run_dir / "test_predictions.npz") as saved:
        if not np.array_equal(saved["labels"], labels):
            raise AuditError(f"{name}: its test rows are not the ones it recorded (the data changed since the run); "
                             f"rerun it.")
        return compare(name, saved["logits"], logits, labels, precision)


# --------------------------------------------------------------------------- merged adapters
def audit_merging(results: Path, device: str = "cpu") -> list[Check]:
    """Re-merge the study's saved task adapters and re-score every merged combination (none without a study)."""
    import torch

    from .config import from_dict
    from .merging import make_combination, merge_method, score_merged
    from .model import resolve_precision
    from .study import MERGED_LOGITS, STUDY_FILE, merged_key

    if not (results / MERGED_LOGITS).is_file():
        return []
    study = read_json(results / STUDY_FILE)
    dirs = [Path(d) / "adapter" for d in study["settings"]["task_dirs"].values()]
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
                                      scores.logits[method], scores.y, precision))
    return checks


# --------------------------------------------------------------------------- the profile
def audit_profile(profile: str, device: str = "cpu") -> dict[str, Any]:
    """Audit every saved model of ``profile``, write ``results/<profile>/audit.json`` and return it.

    Raises :class:`AuditError` (one line per run that does not reproduce, after writing the record) so the
    pipeline stops before the book shows a number its artifact does not give.
    """
    from .progress import say

    results = paths.results_dir(profile)
    start = time.perf_counter()
    checks = []
    for run_dir in audited_runs(results):
        checks.append(audit_run(run_dir, results, device))
        say(f"audit: {checks[-1].line()}")
    for check in audit_merging(results, device):
        checks.append(check)
        say(f"audit: {check.line()}")
    failed = [c for c in checks if not c.reproduced]
    record = {"profile": profile, "runs": len(checks), "reproduced": len(checks) - len(failed),
              "all_reproduced": not failed,
              "largest_abs_logit_diff": max((c.max_abs_logit_diff for c in checks), default=0.0),
              "rows": sum(c.n_test for c in checks), "seconds": round(time.perf_counter() - start, 1),
              "tolerance": TOLERANCE, "not_audited": list(NOT_AUDITED), "checked_at": runs.now(),
              "device": device, "checks": [asdict(c) | {"reproduced": c.reproduced} for c in checks]}
    write_json(record, results / AUDIT_FILE)
    if failed:
        raise AuditError(f"{len(failed)} of {len(checks)} saved models do not reproduce their recorded test "
                         f"scores:\n" + "\n".join(c.line() for c in failed))
    return record


def read_audit(profile: str) -> dict[str, Any] | None:
    """The profile's audit record, or None where the audit has not run."""
    path = paths.results_dir(profile) / AUDIT_FILE
    return read_json(path) if path.is_file() else None


def summary(record: dict[str, Any] | None) -> str:
    """One sentence for the book and the report."""
    if record is None:
        return "The audit has not run on these results."
    if record["all_reproduced"]:
        return (f"All {record['runs']} saved models behind these numbers, reloaded in a fresh process and re-scored on "
                f"their {record['rows']:,} test rows, reproduce their recorded predictions (largest logit difference "
                f"{record['largest_abs_logit_diff']:.1e}; audit {record['seconds']:.0f} s).")
    return f"{record['runs'] - record['reproduced']} of {record['runs']} saved models do not reproduce their numbers."
