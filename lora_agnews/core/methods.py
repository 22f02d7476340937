"""The PEFT methods put to work: their configurations, the combinations refused, BitFit, and merging.

Each method's entry in :data:`lora_agnews.core.config.METHODS` builds its PEFT configuration
(:func:`peft_config`) and says what it allows; BitFit, which PEFT has none of, is written here
(:func:`apply_bitfit`). The head (``heads``) is PEFT's ``modules_to_save`` for every
method. :func:`build_model` puts base encoder, head and method together, after the refusals
(:func:`check_method`, :func:`check_size`, :func:`check_targets`) that say what to change before
anything is built; :func:`merge` folds a trained method back into the base weights.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any, Callable

import torch
from torch import nn

from . import quantize
from .config import Config, ConfigError, EMBEDDINGS, FAMILIES, Family, METHODS, PeftInputs, PRESETS, ROLES, from_dict, in_encoder, in_heads, layer_pattern, parse_targets, family_targets_regex, unmatched_names
from .heads import HeadPlan, apply_head, family
from .model import _base_model, _quiet, model_config, resolve_precision, usable_positions


# --------------------------------------------------------------------------- targets
def target_regex(cfg: Config, plan: HeadPlan, num_layers: int, fam: Family | None = None) -> str:
    """One regex over module names: chosen targets in chosen encoder layers, plus head LoRA.

    ``fam`` defaults to RoBERTa (whose role and module names coincide for query, key, value).
    """
    layers = cfg.layers
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            raise ConfigError(f"parameter 'lora_layers' names layer(s) {bad}, but the model has layers 0..{num_layers - 1}.")
    fam = fam or FAMILIES[0]
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


# --------------------------------------------------------------------------- methods
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
    quantize.check_quantizable(cfg)


def size_limit(cfg: Config, model_cfg: Any = None) -> int | None:
    """The largest size a method can take whatever the budget, None when unbounded.

    PiSSA and OLoRA take the first r singular / orthogonal directions of each adapted weight, so r is at
    most its smaller side (the hidden size, for every role, the head's dense layer and the embeddings).
    VeRA's update ``diag(b) B diag(d) A`` has rank at most that smaller side too: its per-rank cost is one
    scalar per module, so the budget alone would allow ranks of 10^5 (all compute, no expressiveness).
    Prompt tokens share the position embeddings with the text: positions - max_length (RoBERTa-style
    models and MPNet also lose the padding index and the one before it). LoKr's update is ``kron(w1, w2_a w2_b)``
    (each weight's sides factored near their square roots: 768 = 24 x 32); from r of half w2's larger
    side on, PEFT trains w2 in full and the count stops growing with r, so r stays below that
    (:func:`lokr_limit`; 15 for a 768 x 768 weight). The method's entry names its kind of limit (``LIMITS``).
    """
    kind = METHODS[cfg.method].limit
    if not kind:
        return None
    return LIMITS[kind][0](cfg, model_cfg if model_cfg is not None else model_config(cfg))


LIMITS: dict[str, tuple[Callable[[Config, Any], int], str]] = {  # a method's ``limit`` -> (the bound, why)
    "hidden": (lambda cfg, model_cfg: int(model_cfg.hidden_size),
               "the hidden size: the smaller side of the adapted weights"),
    "positions": (lambda cfg, model_cfg: max(0, usable_positions(model_cfg) - cfg.max_length),
                  "the positions left after max_length"),
    "lokr": (lambda cfg, model_cfg: min(lokr_limit(i, o) for i, o in _adapted_shapes(cfg, model_cfg)),
             "below half of w2's larger side: from there PEFT trains w2 in full"),
}


def lokr_limit(in_features: int, out_features: int) -> int:
    """The largest LoKr rank that keeps w2 factored (PEFT's ``r < max(out_k, in_n) / 2``) for one weight."""
    from peft.tuners.lokr.layer import factorization

    _, in_n = factorization(in_features)
    _, out_k = factorization(out_features)
    return math.ceil(max(out_k, in_n) / 2) - 1


def _adapted_shapes(cfg: Config, model_cfg: Any) -> list[tuple[int, int]]:
    """(in, out) of the weights a method adapts: hidden x hidden (attention, a head's dense layer, module names),
    and the feed-forward layers' when ffn_in / ffn_out are targeted."""
    hidden = int(model_cfg.hidden_size)
    inter = int(getattr(model_cfg, "intermediate_size", None) or getattr(model_cfg, "hidden_dim", 4 * hidden))
    targets = parse_targets(cfg.target_modules)
    roles = set(targets.roles)
    shapes = [(hidden, inter)] if "ffn_in" in roles else []
    shapes += [(inter, hidden)] if "ffn_out" in roles else []
    if not roles <= {"ffn_in", "ffn_out"} or targets.names or cfg.head == "lora-dense" or not shapes:
        shapes.append((hidden, hidden))
    return shapes


def check_size(cfg: Config, model_cfg: Any) -> None:
    """A size over the method's limit is refused with the largest allowed, before anything is built."""
    limit = size_limit(cfg, model_cfg)
    method = METHODS[cfg.method]
    key = method.size_key
    if limit is not None and key and getattr(cfg, key) > limit:
        why = LIMITS[method.limit][1]
        raise ConfigError(f"parameter '{key}' is {getattr(cfg, key)}, but method {cfg.method!r} allows at most {limit} "
                          f"here ({why}). Use -p {key} {limit} or less.")


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


# --------------------------------------------------------------------------- building and merging
def build_model(cfg: Config, vocab_size: int | None = None, pad_token_id: int | None = None,
                meta: bool = False, total_steps: int | None = None) -> nn.Module:
    """The PEFT model for ``cfg``. ``meta=True`` builds it without memory (for counting only).

    ``total_steps``: the training length, which AdaLoRA's rank schedule needs (counting and loading
    use a placeholder: the schedule changes no shape). BitFit returns the transformers model itself.
    ``quantize``: the encoder's linear layers are quantized after the head is set up and before the method
    wraps them (not on the meta device: counting needs shapes only, and they do not change).
    """
    from peft import get_peft_model

    check_method(cfg)
    if meta and cfg.init != "random":
        cfg = cfg.replace(init="random")
    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, _quiet():
        base = _base_model(cfg, vocab_size, pad_token_id)
        fam = family(base)
        plan = apply_head(base, cfg.head)
        check_size(cfg, base.config)
        if not METHODS[cfg.method].whole_encoder:
            check_targets(base, cfg, fam)
        if meta and METHODS[cfg.method].init_from_base:
            # the initialisation (SVD / QR of the base weights) changes values, never shapes: count as LoRA
            cfg = cfg.replace(method="lora")
        if not meta:
            quantize.quantize_model(base, cfg, resolve_precision(cfg))
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
    if quantize.is_quantized(model):
        from .paths import say

        say("merging a quantized model: its base is dequantized into full precision first (the merged model is "
            "float32, the size of an unquantized one)")
        model = dequantize(model)
    if not hasattr(model, "peft_config"):
        return model
    if not METHODS[method].lora:
        from peft.utils import ModulesToSaveWrapper

        inner = model.get_base_model()
        for name, module in list(inner.named_modules()):
            if isinstance(module, ModulesToSaveWrapper):
                parent = inner.get_submodule(name.rpartition(".")[0]) if "." in name else inner
                setattr(parent, name.rpartition(".")[2], module.modules_to_save[module.active_adapters[0]])
    return model.merge_and_unload()


def dequantize(model: nn.Module) -> nn.Module:
    """The full-precision model a quantized one computes: the same method and head on the dequantized base.

    Built with ``quantize none`` (random weights, every one then replaced) from the configuration that
    :func:`quantize.quantize_model` recorded on the base model, and filled by :func:`quantize.fill_dequantized`.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = from_dict(inner.lora_agnews_config)
    config = inner.config
    with _quiet():
        plain = build_model(cfg.replace(quantize="none", quantize_double=False, init="random"),
                            vocab_size=config.vocab_size, pad_token_id=config.pad_token_id)
    return quantize.fill_dequantized(plain, model)
