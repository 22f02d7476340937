"""Exact trainable-parameter counts, the largest size within the budget, and the budget check and tables.

Counts come from the model itself (:func:`parameter_breakdown`), built on the meta device for a configuration
(:func:`count_trainable`: exact, instant, no weights or network), grouped into the method's adapter, the head and
anything else trainable. Every sized method's count is affine in its size, so two exact counts give the whole
line (:func:`rank_line`) and the largest size that fits (:func:`largest_rank`) without any search or weights;
:func:`budget_table` and :func:`method_table` tabulate it per target set, head and method.
May import: ``families``, ``methods``, ``config``, ``encoders``, ``quantize``, ``build``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any, Iterable

from torch import nn

from .build import build_model, size_limit
from .config import Config, ConfigError
from .encoders import build_tokenizer, model_config
from .families import family_of, role_of
from .methods import METHODS
from .quantize import base_bytes, estimated_base_bytes, logical_numel, quantizing, scheme_of


class BudgetError(ValueError):
    """The configuration trains more parameters than the budget allows."""


ADAPTER_PARTS = re.compile(r"\.(lora_A|lora_B|lora_E|lora_embedding_A|lora_embedding_B|lora_magnitude_vector|"
                           r"vera_lambda_b|vera_lambda_d|ia3_l|hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|"
                           r"lokr_w1_a|lokr_w1_b|lokr_w1|lokr_w2_a|lokr_w2_b|lokr_w2|lokr_t2|"
                           r"ln_tuning_layers)(\.|$).*$")


def parameter_breakdown(model: nn.Module) -> dict[str, Any]:
    """Exact trainable counts by group; ``total`` is what the budget is checked against.

    ``adapter`` holds the method's own parameters (LoRA matrices, VeRA/(IA)^3 vectors, LoHa factors,
    AdaLoRA's singular values, tuned LayerNorms, BitFit's biases, prompt embeddings); ``lora`` the LoRA
    part of them (names ``lora_*``). ``lora_by_target`` names encoder-layer modules by role (``query``,
    ..., ``ffn_out``) in every family, and other adapted modules by name (``word_embeddings``,
    ``classifier.dense``, ``prompt``, ...), for every method.
    """
    groups: dict[str, int] = {}
    lora_by_target: dict[str, int] = {}
    frozen = 0
    config = getattr(model, "config", None)
    fam = family_of(getattr(config, "model_type", ""))
    bitfit_head = getattr(model, "lora_agnews_head", None)
    for name, p in model.named_parameters():
        if ".original_module." in name:  # PEFT's frozen copy of a modules_to_save head: not part of the model
            continue
        if not p.requires_grad:
            frozen += logical_numel(p)  # a packed 4-bit weight holds two per byte
            continue
        target = None
        adapted = bool(ADAPTER_PARTS.search(name))
        head = "modules_to_save" in name or ".classifier." in name or (
            bitfit_head is not None and any(name.startswith(h + ".") for h in bitfit_head))
        if adapted or (bitfit_head is not None and not head):  # LoRA on the head's dense layer is adapter
            group = "adapter"
            path = ADAPTER_PARTS.sub("", name) if adapted else name.rpartition(".")[0]
            module = path.split(".")
            target = (fam and role_of(fam, path)) or (
                ".".join(module[-2:]) if len(module) > 1 and module[-2] in ("classifier", "pooler") else module[-1])
            if "lora_" in name:
                groups["lora"] = groups.get("lora", 0) + p.numel()
            if "lora_magnitude_vector" in name:
                groups["dora_magnitude"] = groups.get("dora_magnitude", 0) + p.numel()
        elif head:
            group = "head"
        elif name.startswith("prompt_encoder."):
            group, target = "adapter", "prompt"
        else:
            group = "other"
        if target is not None:
            lora_by_target[target] = lora_by_target.get(target, 0) + p.numel()
        groups[group] = groups.get(group, 0) + p.numel()
    total = groups.get("adapter", 0) + groups.get("head", 0) + groups.get("other", 0)
    return {"total": total, "lora": groups.get("lora", 0), "adapter": groups.get("adapter", 0),
            "head": groups.get("head", 0), "other": groups.get("other", 0),
            "dora_magnitude": groups.get("dora_magnitude", 0),
            "lora_by_target": dict(sorted(lora_by_target.items())), "frozen": frozen,
            "all_parameters": total + frozen, **base_bytes(model),
            "base_quantize": scheme_of(model)}


def count_trainable(cfg: Config, vocab_size: int | None = None) -> dict[str, Any]:
    """Breakdown for ``cfg`` built on the meta device: exact, instant, no weights or network."""
    if vocab_size is None and cfg.tokenizer == "local":
        vocab_size = local_vocab_size(cfg.data, cfg.task)
    model = build_model(cfg, vocab_size=vocab_size, meta=True)
    breakdown = parameter_breakdown(model)
    if quantizing(cfg):  # quantisation needs weights; the meta model has shapes, which give its bytes exactly
        breakdown.update(estimated_base_bytes(model, cfg), base_quantize=cfg.quantize)
    return breakdown


@functools.lru_cache(maxsize=8)
def local_vocab_size(data: str, task: str = "agnews") -> int:
    """Vocabulary of the tokenizer built from the task's training rows (LoRA on word embeddings scales with it)."""
    return len(build_tokenizer(Config(data=data, task=task, tokenizer="local")))


def rank_line(cfg: Config, vocab_size: int | None = None) -> tuple[int, int]:
    """``(fixed, per_rank)`` such that trainable(size) = fixed + size * per_rank for ``cfg``.

    Every sized method's count is affine in its size: LoRA/PiSSA/OLoRA ``r (in + out)`` per adapted
    module (+ DoRA's magnitudes), AdaLoRA ``r (in + out + 1)``, VeRA ``out + r``, LoHa ``2 r (in + out)``,
    LoKr ``out_l in_m + r (out_k + in_n)`` (below its limit),
    prompt tuning ``tokens * hidden``; so two exact counts on the meta device (size 1 and 2) give the
    whole line. Size-less methods (ia3, bitfit, layernorm) give ``(count, 0)``. ``vocab_size``: that of a
    tokenizer already built (else the profile's tokenizer decides, as in :func:`count_trainable`).
    """
    method = METHODS[cfg.method]
    key = method.size_key
    if key is None:
        return count_trainable(cfg, vocab_size)["total"], 0
    extra = dict(method.size_resets)
    one = count_trainable(cfg.replace(**{key: 1}, **extra), vocab_size)["total"]
    two = count_trainable(cfg.replace(**{key: 2}, **extra), vocab_size)["total"]
    per_rank = two - one
    return one - per_rank, per_rank


def largest_rank(cfg: Config, budget: int | None = None, vocab_size: int | None = None) -> int:
    """The largest size (LoRA rank, VeRA rank, prompt tokens, ...) that keeps ``cfg`` within ``budget``
    (0 when none does, or for a size-less method)."""
    budget = cfg.budget if budget is None else budget
    key = METHODS[cfg.method].size_key
    limit = size_limit(cfg, model_config(cfg, vocab_size)) if key else None
    fixed, per_rank = rank_line(cfg, vocab_size)
    if per_rank <= 0 or fixed + per_rank > budget:
        return 0
    largest = (budget - fixed) // per_rank
    return largest if limit is None else min(largest, limit)


def check_budget(breakdown: dict[str, Any], cfg: Config) -> None:
    if breakdown["total"] > cfg.budget:
        hint = ""
        key = METHODS[cfg.method].size_key
        with contextlib.suppress(Exception):
            r = largest_rank(cfg) if key else 0
            if key is None:
                hint = f" Method {cfg.method!r} has no size to reduce; try -p head linear or another method."
            else:
                what = "rank" if key == "lora_r" else "number of prompt tokens"
                hint = (f" The largest {what} that fits with these targets and head is {r} (-p {key} {r})."
                        if r else f" No {what} fits with this head; try -p head linear.")
        raise BudgetError(
            f"configuration trains {breakdown['total']:,} parameters ({_method_label(cfg)} {breakdown['adapter']:,} + head "
            f"{breakdown['head']:,}), over the budget of {cfg.budget:,}.{hint} Refused before training."
        )


def _method_label(cfg: Config) -> str:
    return "LoRA" if cfg.method == "lora" else cfg.method


def format_breakdown(breakdown: dict[str, Any], budget: int) -> str:
    lines = [f"{'group':<28}{'parameters':>14}"]
    adapter = breakdown.get("adapter", breakdown["lora"])
    label = "lora" if adapter == breakdown["lora"] else "adapter"  # a LoRA-only adapter is named LoRA
    for target, n in breakdown["lora_by_target"].items():
        lines.append(f"{'  ' + label + ' ' + target:<28}{n:>14,}")
    lines.append(f"{label + ' (all)':<28}{adapter:>14,}")
    if breakdown["dora_magnitude"]:
        lines.append(f"{'  of which DoRA magnitude':<28}{breakdown['dora_magnitude']:>14,}")
    lines.append(f"{'classification head':<28}{breakdown['head']:>14,}")
    if breakdown["other"]:
        lines.append(f"{'other trainable':<28}{breakdown['other']:>14,}")
    lines.append(f"{'frozen':<28}{breakdown['frozen']:>14,}")
    scheme = breakdown.get("base_quantize", "none")
    if scheme != "none" and breakdown.get("base_bytes"):
        lines.append(f"{'frozen base (' + scheme + ')':<28}{breakdown['base_bytes'] / 2**20:>10,.1f} MiB   "
                     f"(float32: {breakdown['base_bytes_fp32'] / 2**20:,.1f} MiB)")
    share = 100.0 * breakdown["total"] / budget
    lines.append(f"{'trainable total':<28}{breakdown['total']:>14,}   ({share:.1f}% of budget {budget:,})")
    lines.append(f"trainable_params: {breakdown['total']}")
    return "\n".join(lines)


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
