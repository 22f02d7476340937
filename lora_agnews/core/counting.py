"""Exact trainable-parameter counts, and the budget they are checked against.

Counts come from the model itself (:func:`parameter_breakdown`), built on the meta device for
a configuration (:func:`count_trainable`: exact, instant, no weights or network), grouped into
the method's adapter, the head and anything else trainable. The largest size within the budget
(``rank_line``, ``largest_rank``) is computed here, next to the count it is made of, so the
budget check (:func:`check_budget`) needs nothing above this module.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any

from torch import nn

from . import quantize
from .config import Config, METHODS, family_of, role_of
from .methods import build_model, size_limit
from .model import build_local_tokenizer, model_config


class BudgetError(ValueError):
    """The configuration trains more parameters than the budget allows."""


# --------------------------------------------------------------------------- counting
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
            frozen += quantize.logical_numel(p)  # a packed 4-bit weight holds two per byte
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
            "all_parameters": total + frozen, **quantize.base_bytes(model),
            "base_quantize": _quantize_of(model)}


def _quantize_of(model: nn.Module) -> str:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return str(getattr(inner, "lora_agnews_config", {}).get("quantize", "none"))


def count_trainable(cfg: Config, vocab_size: int | None = None) -> dict[str, Any]:
    """Breakdown for ``cfg`` built on the meta device: exact, instant, no weights or network."""
    if vocab_size is None and cfg.tokenizer == "local":
        vocab_size = local_vocab_size(cfg.data, cfg.task)
    model = build_model(cfg, vocab_size=vocab_size, meta=True)
    breakdown = parameter_breakdown(model)
    if quantize.quantizing(cfg):  # quantisation needs weights; the meta model has shapes, which give its bytes exactly
        breakdown.update(quantize.estimated_base_bytes(model, cfg), base_quantize=cfg.quantize)
    return breakdown


@functools.lru_cache(maxsize=8)
def local_vocab_size(data: str, task: str = "agnews") -> int:
    """Vocabulary of the tokenizer built from the task's training rows (LoRA on word embeddings scales with it)."""
    from .data import load_task

    return len(build_local_tokenizer(load_task(Config(data=data, task=task))[0]["text"].tolist()))


# --------------------------------------------------------------------------- the budget
def rank_line(cfg: Config, vocab_size: int | None = None) -> tuple[int, int]:
    """``(fixed, per_rank)`` such that trainable(size) = fixed + size * per_rank for ``cfg``.

    Every sized method's count is affine in its size: LoRA/PiSSA/OLoRA ``r (in + out)`` per adapted
    module (+ DoRA's magnitudes), AdaLoRA ``r (in + out + 1)``, VeRA ``out + r``, LoHa ``2 r (in + out)``,
    LoKr ``out_l in_m + r (out_k + in_n)`` (below its limit),
    prompt tuning ``tokens * hidden``; so two exact counts on the meta device (size 1 and 2) give the
    whole line. Size-less methods (ia3, bitfit, layernorm) give ``(count, 0)``. ``vocab_size``: that of a
    tokenizer already built (else the profile's tokenizer decides, as in :func:`count_trainable`).
    """
    key = METHODS[cfg.method].size_key
    if key is None:
        return count_trainable(cfg, vocab_size)["total"], 0
    extra = {"adalora_target_r": 0} if cfg.method == "adalora" else {}
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
