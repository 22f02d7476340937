"""The trainable model for a configuration: the method's refusals, its PEFT wrapping (or BitFit), and merging back.

:func:`build_model` puts base encoder (:mod:`~lora_agnews.core.encoders`), head (:mod:`~lora_agnews.core.heads`),
quantized base (:mod:`~lora_agnews.core.quantize`) and method (:mod:`~lora_agnews.core.methods`) together, after
the refusals (:func:`check_method`, :func:`check_size`, :func:`check_targets`) that say what to change before
anything is built; :func:`merge` folds a trained method back into the base weights.
May import: ``paths``, ``families``, ``methods``, ``config``, ``encoders``, ``precision``, ``heads``, ``quantize``.
peft is imported where a model is wrapped or merged: importing it takes about 3 s and loads bitsandbytes (measured
on 2 cores), and the training module, which imports this one, also serves commands that build no model.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import torch
from torch import nn

from .config import Config, ConfigError, from_dict
from .encoders import family, load_base, model_config, quiet
from .families import (EMBEDDINGS, PRESETS, ROLES, Family, family_targets_regex, in_encoder, in_heads, layer_pattern,
                       unmatched_names, usable_positions)
from .heads import HeadPlan, apply_head
from .methods import METHODS, PeftInputs
from .paths import say
from .precision import resolve_precision
from .quantize import check_quantizable, fill_dequantized, is_quantized, quantize_model, unwrapped


def target_regex(cfg: Config, plan: HeadPlan, num_layers: int, fam: Family) -> str:
    """One regex over ``fam``'s module names: chosen targets in chosen encoder layers, plus head LoRA."""
    layers = cfg.layers
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            raise ConfigError(f"parameter 'lora_layers' names layer(s) {bad}, but the model has layers 0..{num_layers - 1}.")
    return family_targets_regex(fam, cfg.target_modules, layers, plan.lora_extra)


def check_targets(model: nn.Module, cfg: Config, fam: Family) -> None:
    """A module name in ``lora_targets`` that matches nothing is a typo: say what would match."""
    names = [n for n, _ in model.named_modules()]
    unmatched = unmatched_names(fam, cfg.target_modules, names)
    if unmatched:
        raise ConfigError(
            f"parameter 'lora_targets': {', '.join(repr(t) for t in unmatched)} is neither a role "
            f"({', '.join(ROLES)}), a preset ({', '.join(PRESETS)}), "
            f"{EMBEDDINGS}, nor the name of a module in this {fam.name} model's encoder layers.")


class MergeError(ValueError):
    """The method's trained parameters cannot be folded into the base weights."""


def check_method(cfg: Config) -> None:
    """Combinations PEFT does not support, refused with the fix before anything is built."""
    method = METHODS[cfg.method]
    if method.linear_only and EMBEDDINGS in cfg.target_modules:
        raise ConfigError(f"method {cfg.method!r} adapts linear layers only (PEFT has no {cfg.method} for embeddings); "
                          f"drop {EMBEDDINGS} from lora_targets.")
    if method.whole_encoder and cfg.head == "lora-dense":
        raise ConfigError(f"head 'lora-dense' adapts the head's dense layer with the method's adapter; method "
                          f"{cfg.method!r} has none. Use -p head default or -p head linear.")
    check_quantizable(cfg)


def size_limit(cfg: Config, model_cfg: Any = None) -> int | None:
    """The largest size the method can take whatever the budget (its entry's :class:`~lora_agnews.core.methods.Limit`),
    None when unbounded. ``model_cfg``: the encoder's transformers config (default: the configuration's)."""
    limit = METHODS[cfg.method].limit
    if limit is None:
        return None
    return limit.bound(cfg, model_cfg if model_cfg is not None else model_config(cfg))


def check_size(cfg: Config, model_cfg: Any) -> None:
    """A size over the method's limit is refused with the largest allowed, before anything is built."""
    method = METHODS[cfg.method]
    limit, key = size_limit(cfg, model_cfg), method.size_key
    if method.limit is not None and limit is not None and key and getattr(cfg, key) > limit:
        raise ConfigError(f"parameter '{key}' is {getattr(cfg, key)}, but method {cfg.method!r} allows at most {limit} "
                          f"here ({method.limit.why}). Use -p {key} {limit} or less.")


def check_max_length(cfg: Config, model_cfg: Any) -> None:
    """Refuse token lengths the encoder has no positions for, before any text is tokenized or any run written."""
    usable = usable_positions(model_cfg)
    for key in ("max_length", "merge_max_length"):
        if getattr(cfg, key) > usable:
            raise ConfigError(f"parameter '{key}' is {getattr(cfg, key)}, but {cfg.model_name} has positions for "
                              f"{usable} tokens ({model_cfg.max_position_embeddings} position embeddings"
                              f"{' less the padding offset' if usable < model_cfg.max_position_embeddings else ''}). "
                              f"Use -p {key} {usable} or less.")


def text_limit(cfg: Config, model_cfg: Any) -> int:
    """Tokens one text keeps: ``max_length``, and never more than the positions left after prompt tuning's
    virtual tokens, so an adapter recorded with a longer ``max_length`` still scores instead of overrunning."""
    room = usable_positions(model_cfg) - (cfg.prompt_tokens if METHODS[cfg.method].size_key == "prompt_tokens" else 0)
    return max(1, min(cfg.max_length, room))


def peft_config(cfg: Config, plan: HeadPlan, model: nn.Module, fam: Family, total_steps: int | None = None) -> Any:
    """PEFT's configuration for ``cfg.method``, built by its registry entry (None for BitFit, which PEFT lacks).

    The head is PEFT's ``modules_to_save`` (trained in full) for every method, as for LoRA. Methods that
    choose their own modules (whole encoder) get no target regex: ``lora_targets`` does not apply to them.
    """
    method = METHODS[cfg.method]
    if method.peft is None:
        return None
    targets = "" if method.whole_encoder else target_regex(cfg, plan, model.config.num_hidden_layers, fam)
    return method.peft(cfg, PeftInputs(model, fam, tuple(plan.modules_to_save), targets, total_steps))


def apply_bitfit(model: nn.Module, plan: HeadPlan, cfg: Config) -> nn.Module:
    """BitFit (hand-written; PEFT has none): every bias of the encoder trained, the head in full, all else frozen.

    With ``lora_layers`` only the biases inside those encoder layers (no embedding bias). The model
    stays a plain transformers model; it records the method and head for counting and saving.
    """
    fam = family(model)
    layer_re = re.compile(fam.layer_prefix(layer_pattern(cfg.layers))) if cfg.layers is not None else None
    suffix = METHODS[cfg.method].base_suffix
    for name, p in model.named_parameters():
        head = in_heads(name, plan.modules_to_save)
        bias = name.endswith(suffix) and in_encoder(model, name) and (layer_re is None or layer_re.match(name))
        p.requires_grad_(bool(head or bias))
    model.lora_agnews_method = cfg.method
    model.lora_agnews_head = tuple(plan.modules_to_save)
    return model


def build_model(cfg: Config, vocab_size: int | None = None, pad_token_id: int | None = None,
                meta: bool = False, total_steps: int | None = None) -> nn.Module:
    """The PEFT model for ``cfg``. ``meta=True`` builds it without memory (for counting only).

    ``total_steps``: the training length, which AdaLoRA's rank schedule needs (counting and loading
    use a placeholder: the schedule changes no shape). BitFit returns the transformers model itself.
    ``quantize``: the encoder's linear layers are quantized after the head is set up and before the method
    wraps them (not on the meta device: counting needs shapes only, and they do not change).
    """
    from peft import get_peft_model  # 3 s to import: see the module's docstring

    check_method(cfg)
    if meta and cfg.init != "random":
        cfg = cfg.replace(init="random")
    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, quiet():
        base = load_base(cfg, vocab_size, pad_token_id)
        fam = family(base)
        plan = apply_head(base, cfg.head)
        check_size(cfg, base.config)
        if not METHODS[cfg.method].whole_encoder:
            check_targets(base, cfg, fam)
        if meta and METHODS[cfg.method].init_from_base:
            # the initialisation (SVD / QR of the base weights) changes values, never shapes: count as LoRA
            cfg = cfg.replace(method="lora")
        if not meta:
            quantize_model(base, cfg, resolve_precision(cfg))
        pc = peft_config(cfg, plan, base, fam, total_steps)
        model = apply_bitfit(base, plan, cfg) if pc is None else get_peft_model(base, pc)
    return model


def merge(model: nn.Module, method: str) -> nn.Module:
    """A plain transformers model with the trained parameters folded into the weights (same predictions).

    BitFit is one already (its biases are the model's own). Prompt tuning cannot be merged: a MergeError
    names the method. PEFT's generic unload cannot unwrap a head that is not a single layer (RoBERTa's
    ``classifier``), so the trained head copies are put in place first. A quantized model is first
    dequantized into full precision (:func:`dequantize`): adding an update to 4-bit weights would round
    the sum again, so the merged model is a full-precision one, and says so.
    """
    why = METHODS[method].not_mergeable
    if why:
        raise MergeError(f"method {method!r} cannot be merged into the base model: {why}. "
                         f"Use the adapter unmerged (merge_eval false).")
    if is_quantized(model):
        say("merging a quantized model: its base is dequantized into full precision first (the merged model is "
            "float32, the size of an unquantized one)")
        model = dequantize(model)
    if not hasattr(model, "peft_config"):
        return model
    if not METHODS[method].lora:
        from peft.utils import ModulesToSaveWrapper  # 3 s to import: see the module's docstring

        inner = model.get_base_model()
        for name, module in list(inner.named_modules()):
            if isinstance(module, ModulesToSaveWrapper):
                parent = inner.get_submodule(name.rpartition(".")[0]) if "." in name else inner
                setattr(parent, name.rpartition(".")[2], module.modules_to_save[module.active_adapters[0]])
    return model.merge_and_unload()


def dequantize(model: nn.Module) -> nn.Module:
    """The full-precision model a quantized one computes: the same method and head on the dequantized base.

    Built with ``quantize none`` (random weights, every one then replaced) from the configuration that
    :func:`quantize_model` recorded on the base model, and filled by :func:`fill_dequantized`.
    """
    inner = unwrapped(model)
    cfg = from_dict(inner.lora_agnews_config)
    config = inner.config
    with quiet():
        plain = build_model(cfg.replace(quantize="none", quantize_double=False, init="random"),
                            vocab_size=config.vocab_size, pad_token_id=config.pad_token_id)
    return fill_dequantized(plain, model)
