"""How much LoRA fits the budget: the largest rank per target set and head.

A LoRA count is affine in the rank (``head + magnitude + r * sum(in + out)`` over adapted
modules), so two exact counts on the meta device (r=1, r=2) give the whole line and the
largest fitting rank without any search or weights. That arithmetic (``rank_line``,
``largest_rank``) lives in ``counting``, next to the count and the budget check that use it;
this module tabulates it. Target sets may use roles and presets (``attention``,
``all-linear``; see ``placements``).
"""

from __future__ import annotations

from typing import Any, Iterable

from .config import Config, ConfigError, METHODS
from .counting import largest_rank, rank_line

__all__ = ["budget_table", "format_budget_table", "format_method_table", "largest_rank", "method_table", "rank_line"]


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


def method_table(cfg: Config, methods: Iterable[str], target_sets: Iterable[str],
                 heads: Iterable[str]) -> list[dict[str, Any]]:
    """For each method x target set x head: the largest size that fits (LoRA/PiSSA/OLoRA/AdaLoRA/VeRA/LoHa
    rank, prompt tokens) and its exact total; size-less methods (ia3, bitfit, layernorm): the count and
    whether it fits. Methods that adapt the whole encoder (bitfit, layernorm, prompt) ignore target sets."""
    from .methods import size_limit

    rows = []
    target_sets = list(target_sets)
    for method in methods:
        for targets in (["-"] if METHODS[method].whole_encoder else target_sets):
            for head in heads:
                row: dict[str, Any] = {"method": method, "lora_targets": targets, "head": head,
                                       "size_key": METHODS[method].size_key or "-"}
                try:
                    variant = cfg.replace(method=method, head=head, lora_variant="lora", adalora_target_r=0,
                                          **({} if targets == "-" else {"lora_targets": targets}))
                    fixed, per_size = rank_line(variant)
                    size = largest_rank(variant) if per_size else None
                    total = (fixed + size * per_size) if size else (fixed if not per_size else None)
                    limit = size_limit(variant) if per_size else None
                    row.update(fixed=fixed, per_size=per_size, max_size=size, total=total, capped=size == limit,
                               fits=total is not None and total <= cfg.budget, error="")
                except ConfigError as exc:
                    row.update(fixed=None, per_size=None, max_size=None, total=None, fits=False, error=str(exc))
                rows.append(row)
    return rows


def format_method_table(rows: list[dict[str, Any]], budget: int) -> str:
    lines = [f"budget: {budget:,} trainable parameters (head included)",
             f"{'method':<11}{'targets':<34}{'head':<12}{'size':<15}{'max':>7}{'total':>11}{'fits':>6}"]
    for row in rows:
        if row["error"]:
            lines.append(f"{row['method']:<11}{row['lora_targets']:<34}{row['head']:<12}not applicable: {row['error']}")
            continue
        size = (str(row["max_size"]) + ("*" if row.get("capped") else "")) if row["max_size"] else "-"
        total = f"{row['total']:,}" if row["total"] is not None else "-"
        lines.append(f"{row['method']:<11}{row['lora_targets']:<34}{row['head']:<12}{row['size_key']:<15}"
                     f"{size:>7}{total:>11}{'yes' if row['fits'] else 'no':>6}")
    if any(row.get("capped") for row in rows):
        lines.append("* the method's own limit, below what the budget allows (PiSSA/OLoRA/VeRA: r <= hidden size; "
                     "prompt tokens: positions left after max_length)")
    return "\n".join(lines)
