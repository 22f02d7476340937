"""The methods the project knows: one entry each, asked by every module that needs a property.

A method's entry says how its PEFT configuration is built, what sizes it (``lora_r``, ``prompt_tokens``
or nothing) and what bounds that size, where it can go (linear layers only, the whole encoder), and
why it cannot run on a quantized base, be merged into the weights or be combined across tasks (an
empty reason: it can). Adding a method is one entry here plus its tests: the code branches on these
properties, not on names.

This module sits below ``config`` (which validates ``method`` and ``lora_variant`` against it), so it
imports no configuration: a builder receives the run's :class:`~lora_agnews.config.Config` as
``Settings``. torch and PEFT are imported inside the builders, so reading the table stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from . import placements

Settings = Any  # a config.Config: config validates against these tables, so it cannot be imported here
ADALORA_COUNT_STEPS = 1000  # AdaLoRA's schedule length when a model is built for counting or loading only


# --------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class PeftInputs:
    """What a builder needs beside the configuration: the model it wraps and where the method goes."""

    model: Any  # the transformers model, its head already set up
    family: placements.Family
    heads: tuple[str, ...]  # PEFT's modules_to_save: the head, trained in full by every method
    targets: str  # regex of the adapted modules ("" for whole-encoder methods, which choose their own)
    total_steps: int | None = None  # the training length (AdaLoRA's rank schedule); None when only counting


Builder = Callable[[Settings, PeftInputs], Any]


@dataclass(frozen=True)
class Method:
    """One PEFT method and the properties the code asks instead of its name.

    ``peft`` builds PEFT's configuration; None marks a hand-written method (BitFit) that trains the
    base model's own parameters named ``*<base_suffix>`` and is saved as a transformers model.
    ``limit`` names the bound on the size whatever the budget (``methods.size_limit``): ``hidden``
    (the adapted weights' smaller side), ``positions`` (the positions left after ``max_length``),
    ``lokr`` (below half of LoKr's w2), or "" for none. ``card`` is what the model card says the
    method trained. ``lora``: LoRA factors, so ``lora_variant`` applies and PEFT's own merge unwraps
    the head. ``init_from_base``: initialised from the base weights, which changes values, never shapes.
    """

    name: str
    title: str  # the one display name: tables, figures, model cards
    peft: Builder | None
    card: Callable[[Settings], str]
    size_key: str | None = "lora_r"
    limit: str = ""
    lora: bool = False
    init_from_base: bool = False
    linear_only: bool = False  # PEFT adapts linear layers only (no word_embeddings)
    whole_encoder: bool = False  # lora_targets does not apply
    base_suffix: str = ""
    not_on_quantized: str = ""  # why it cannot start from, or train on, a quantized base
    not_mergeable: str = ""  # why it cannot be folded into the base weights
    not_combinable: str = "it has no LoRA factors for add_weighted_adapter to combine"  # multi-task merging

    @property
    def heading(self) -> str:
        """The display name at the start of a heading or sentence."""
        return self.title[:1].upper() + self.title[1:]


def _lora(init: Any) -> Builder:
    """LoRA with PEFT's initialisation ``init`` (True: LoRA's own; "pissa", "olora": from the base weights)."""
    def build(cfg: Settings, at: PeftInputs) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=at.targets, modules_to_save=list(at.heads), init_lora_weights=init,
                          use_rslora=cfg.lora_variant == "rslora", use_dora=cfg.lora_variant == "dora", bias="none")
    return build


def adalora_target_r(cfg: Settings) -> int:
    """AdaLoRA's final average rank: ``adalora_target_r``, or half the initial rank (at least 1)."""
    return cfg.adalora_target_r or max(1, cfg.lora_r // 2)


def _adalora(cfg: Settings, at: PeftInputs) -> Any:
    from peft import AdaLoraConfig

    return AdaLoraConfig(init_r=cfg.lora_r, target_r=adalora_target_r(cfg), lora_alpha=cfg.lora_alpha,
                         lora_dropout=cfg.lora_dropout, total_step=max(2, at.total_steps or ADALORA_COUNT_STEPS),
                         tinit=0, tfinal=0, target_modules=at.targets, modules_to_save=list(at.heads))


def _vera(cfg: Settings, at: PeftInputs) -> Any:
    from peft import VeraConfig

    # the shared random projections are saved with the adapter (reloaded bit for bit, no PRNG assumptions)
    return VeraConfig(r=cfg.lora_r, target_modules=at.targets, vera_dropout=cfg.lora_dropout,
                      projection_prng_key=cfg.seed, save_projection=True, modules_to_save=list(at.heads))


def _loha(cfg: Settings, at: PeftInputs) -> Any:
    from peft import LoHaConfig

    return LoHaConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=at.targets, modules_to_save=list(at.heads))


def _lokr(cfg: Settings, at: PeftInputs) -> Any:
    from peft import LoKrConfig

    return LoKrConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=at.targets, modules_to_save=list(at.heads))


def _ia3(cfg: Settings, at: PeftInputs) -> Any:
    """(IA)^3 scales the outputs of attention-like modules and the inputs of the FFN down-projection."""
    from peft import IA3Config

    roles = placements.parse_targets(cfg.target_modules).roles
    ffn = placements.target_regex(at.family, ["ffn_out"], cfg.layers) if "ffn_out" in roles else []
    return IA3Config(target_modules=at.targets, feedforward_modules=ffn, modules_to_save=list(at.heads))


def _layernorm(cfg: Settings, at: PeftInputs) -> Any:
    """Every LayerNorm of the encoder (of ``lora_layers`` when set), never the head's."""
    from peft import LNTuningConfig
    from torch import nn

    layer_re = re.compile(at.family.layer_prefix(placements.layer_pattern(cfg.layers))) if cfg.layers is not None else None
    norms = [n for n, m in at.model.named_modules() if isinstance(m, nn.LayerNorm) and in_encoder(at.model, n)
             and not in_heads(n, at.heads) and (layer_re is None or layer_re.match(n))]
    return LNTuningConfig(target_modules="^(?:" + "|".join(re.escape(n) for n in norms) + ")$",
                          modules_to_save=list(at.heads))


def _prompt(cfg: Settings, at: PeftInputs) -> Any:
    from peft import PromptTuningConfig

    config = at.model.config
    return PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=cfg.prompt_tokens, token_dim=config.hidden_size,
                              num_transformer_submodules=1, num_attention_heads=config.num_attention_heads,
                              num_layers=config.num_hidden_layers, prompt_tuning_init="RANDOM",
                              modules_to_save=list(at.heads))


def in_encoder(model: Any, name: str) -> bool:
    """Whether module or parameter ``name`` belongs to the encoder (not the head beside it)."""
    return name.startswith(model.base_model_prefix + ".")


def in_heads(name: str, heads: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of the head modules, or inside one."""
    return any(name == h or name.startswith(h + ".") for h in heads)


def _lora_card(init: str) -> Callable[[Settings], str]:
    return lambda c: f"{init}r={c.lora_r}, alpha={c.lora_alpha}, {c.lora_variant}, targets {c.lora_targets}"


def _ranked_card(c: Settings) -> str:
    return f"r={c.lora_r}, targets {c.lora_targets}"


_RESIDUAL = "it is trained against residual base weights of its own (its initialisation changes the base)"
_LYCORIS = ("PEFT's {} (LyCORIS) layers have no quantized version: they read the base weight's shape, which 4-bit "
            "storage packs")

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lora", "LoRA", _lora(True), _lora_card(""), lora=True, not_combinable=""),
    Method("pissa", "PiSSA", _lora("pissa"), _lora_card("PiSSA initialisation, "), limit="hidden", lora=True,
           init_from_base=True, not_combinable=_RESIDUAL,
           not_on_quantized="PiSSA initialises the adapter from an SVD of the full-precision base weights and "
                            "subtracts it from them (PEFT refuses it on a quantized base: the residual would be "
                            "rounded again)"),
    Method("olora", "OLoRA", _lora("olora"), _lora_card("OLoRA initialisation, "), limit="hidden", lora=True,
           init_from_base=True, not_combinable=_RESIDUAL,
           not_on_quantized="OLoRA initialises the adapter from a QR decomposition of the full-precision base "
                            "weights and subtracts it from them; on a quantized base PEFT re-quantizes the "
                            "residual, a second rounding that a rebuilt base does not reproduce"),
    Method("adalora", "AdaLoRA", _adalora, linear_only=True,
           card=lambda c: f"initial r={c.lora_r}, target r={adalora_target_r(c)}, alpha={c.lora_alpha}, "
                          f"targets {c.lora_targets}"),
    Method("vera", "VeRA", _vera, _ranked_card, limit="hidden", linear_only=True),
    Method("loha", "LoHa", _loha, _ranked_card, linear_only=True, not_on_quantized=_LYCORIS.format("LoHa")),
    Method("lokr", "LoKr", _lokr, _ranked_card, limit="lokr", linear_only=True,
           not_on_quantized=_LYCORIS.format("LoKr")),
    Method("ia3", "(IA)³", _ia3, lambda c: f"targets {c.lora_targets}", size_key=None, linear_only=True),
    Method("bitfit", "BitFit", None, lambda c: "the encoder's biases", size_key=None, whole_encoder=True,
           base_suffix=".bias"),
    Method("layernorm", "LayerNorm tuning", _layernorm, lambda c: "the encoder's LayerNorms", size_key=None,
           whole_encoder=True),
    Method("prompt", "prompt tuning", _prompt, lambda c: f"{c.prompt_tokens} virtual tokens", size_key="prompt_tokens",
           limit="positions", whole_encoder=True,
           not_mergeable="prompt tuning adds virtual tokens to the input, not a change of any weight"),
)}
