"""How much LoRA fits the budget: the largest rank per target set and head.

A LoRA count is affine in the rank (``head + magnitude + r * sum(in + out)`` over adapted
modules), so two exact counts on the meta device (r=1, r=2) give the whole line and the
largest fitting rank without any search or weights. That arithmetic (``rank_line``,
``largest_rank``) lives in ``model``, next to the count and the budget check that use it;
this module tabulates it. Target sets may use roles and presets (``attention``,
``all-linear``; see ``placements``).
"""

from __future__ import annotations

from typing import Any, Iterable

from .config import Config
from .model import largest_rank, rank_line

__all__ = ["budget_table", "format_budget_table", "largest_rank", "rank_line"]


def budget_table(cfg: Config, target_sets: Iterable[str], heads: Iterable[str]) -> list[dict[str, Any]]:
    """For each target set x head: fixed cost, cost per rank, largest rank and its exact total."""
    rows = []
    for targets in target_sets:
        for head in heads:
            variant = cfg.replace(lora_targets=targets, head=head)
            fixed, per_rank = rank_line(variant)
            r = largest_rank(variant)
            rows.append({"lora_targets": targets, "head": head, "fixed": fixed, "per_rank": per_rank,
                         "max_rank": r, "total_at_max": fixed + r * per_rank if r else None})
    return rows


def format_budget_table(rows: list[dict[str, Any]], budget: int) -> str:
    lines = [f"budget: {budget:,} trainable parameters (head included)",
             f"{'targets':<34}{'head':<12}{'fixed':>10}{'per rank':>10}{'max r':>7}{'total':>11}"]
    for row in rows:
        total = f"{row['total_at_max']:,}" if row["total_at_max"] else "-"
        lines.append(f"{row['lora_targets']:<34}{row['head']:<12}{row['fixed']:>10,}{row['per_rank']:>10,}"
                     f"{row['max_rank']:>7}{total:>11}")
    return "\n".join(lines)
