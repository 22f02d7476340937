"""When does a model re-scored here reproduce its record? One rule, stated once, for the audit and the reproduce step.

* **Same setting** (the same machine kind, :mod:`lora_agnews.core.hardware`, and the same precision): the
  computation is the same, so the labels must be identical and the largest logit difference within
  :data:`EXACT_TOLERANCE` for the precision (fp32 differs only by the order of a reduction; bf16/fp16 by a rounding
  of their 8- or 11-bit mantissa in some matmul).
* **Another setting** (another CPU kind, a GPU, or another precision because this machine lacks the record's
  units): rounding differs in the last bits, so a label may flip, but only on a near-tie. *Reproduced within
  numerical noise* holds when the largest logit difference is within :data:`CROSS_TOLERANCE` of the coarser
  precision and every row whose label differs had a recorded top-two margin below the near-tie bound, twice that
  tolerance (a flip needs the two top logits to move apart by the margin, each by at most the tolerance). The
  accuracies then differ only through those rows. The bounds come from measurements across kinds
  (``benchmarks/cross_machine_rescore.py``; the guide's audit page gives them).

Anything else fails, naming the run, both accuracies, how many labels differ and the largest margin among them.
May import: nothing of the package; numpy only (torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Largest |logit difference| for the same computation repeated in another process on the same machine kind.
EXACT_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 5e-2}
# Largest |logit difference| across machine kinds or precisions, by the coarser precision of the two: about 3x the
# largest measured (benchmarks/cross_machine_rescore.py, 2026-12-07; the guide's audit page has the table): bf16,
# 0.076 (the base archive's AMX bf16 logits re-scored in fp32 as an AVX2 CPU; MiniLM: 0.023-0.031); fp32, the same
# run scored in fp32 on AMX and as an AVX2 CPU.
CROSS_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.25}
_COARSENESS = ("fp32", "fp16", "bf16")  # finest first: bf16 has the shortest mantissa


@dataclass(frozen=True)
class Setting:
    """Where and how logits were computed: the machine kind (``AMX``, ``AVX2``, ``GPU <name>``...) and precision."""

    kind: str
    precision: str

    def words(self) -> str:
        return f"{self.kind} ({self.precision})"


def coarser(a: str, b: str) -> str:
    """The less precise of two precisions."""
    return max(a, b, key=lambda p: _COARSENESS.index(p) if p in _COARSENESS else 0)


def same_setting(computed: Setting, here: Setting) -> bool:
    """The exact rule applies: the same known machine kind and the same precision."""
    return computed.kind == here.kind and computed.kind != "unknown" and computed.precision == here.precision


def near_tie_bound(computed: Setting, here: Setting) -> float:
    """The recorded top-two margin below which a label may differ between the two settings."""
    return 2 * CROSS_TOLERANCE.get(coarser(computed.precision, here.precision), CROSS_TOLERANCE["bf16"])


def threshold_logits(thresholds: np.ndarray | float, shape: tuple[int, ...]) -> np.ndarray:
    """Per-label probability thresholds as the logits they cut at (a sigmoid's inverse), broadcast to ``shape``."""
    t = np.clip(np.broadcast_to(np.asarray(thresholds, dtype=np.float64), shape), 1e-7, 1 - 1e-7)
    return np.log(t / (1 - t))


def margins(logits: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """How far each row's decision is from changing: top-two logit margin (single-label), or per label the distance
    of the logit from its threshold's logit (multi-label, ``thresholds`` given: a matrix like ``logits``)."""
    if thresholds is None:
        if logits.shape[1] < 2:
            return np.abs(logits[:, 0])
        top = np.sort(logits, axis=1)
        return top[:, -1] - top[:, -2]
    return np.abs(logits - threshold_logits(thresholds, logits.shape))


@dataclass(frozen=True)
class Agreement:
    """Recorded against re-scored logits of one model on the same rows, and the verdict of the rule."""

    n: int
    differing: int  # rows whose predicted label (or label set) differs
    largest_margin: float  # the largest recorded margin among the differing rows (0 when none differ)
    max_abs_logit_diff: float
    exact: bool  # the same setting: the exact rule applies
    tolerance: float  # the logit tolerance of the rule that applies
    bound: float  # the near-tie bound: across settings, or rows re-scored in other batches; else 0 (no label may differ)

    @property
    def reproduced(self) -> bool:
        return self.max_abs_logit_diff <= self.tolerance and (self.differing == 0 or self.largest_margin < self.bound)

    @property
    def verdict(self) -> str:
        if not self.reproduced:
            return "does not reproduce"
        return "reproduced exactly" if self.exact and not self.differing else "reproduced within numerical noise"


def agree(recorded: np.ndarray, got: np.ndarray, computed: Setting, here: Setting,
          thresholds: np.ndarray | None = None, rebatched: bool = False) -> Agreement:
    """Apply the rule to recorded and re-scored logits of the same rows (``thresholds``: a multi-label model's).

    ``rebatched``: the rows were re-scored apart from the others they were scored with (a sample). Scoring batches
    rows by length and pads each batch to its longest, so a sample's batches differ from the recorded ones and, in
    bf16, its logits move within the exact tolerance: a label may then differ only where its recorded margin is
    below twice that tolerance, as across machines."""
    if thresholds is None:
        before, after = recorded.argmax(1), got.argmax(1)
        differs = before != after
        margin = margins(recorded)
    else:
        cut = threshold_logits(thresholds, recorded.shape)
        flips = (recorded >= cut) != (got >= cut)
        differs = flips.any(1)
        margin = np.where(flips, margins(recorded, thresholds), 0.0).max(1)
    exact = same_setting(computed, here)
    precision = coarser(computed.precision, here.precision)
    tolerance = EXACT_TOLERANCE.get(precision, 1e-4) if exact else CROSS_TOLERANCE.get(precision, CROSS_TOLERANCE["bf16"])
    return Agreement(int(len(recorded)), int(differs.sum()), float(margin[differs].max()) if differs.any() else 0.0,
                     float(np.abs(recorded - got).max()) if got.size else 0.0, exact, tolerance,
                     (2 * tolerance if rebatched else 0.0) if exact else near_tie_bound(computed, here))
