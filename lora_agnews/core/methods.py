"""The PEFT methods the project knows: one entry each, asked by every module that needs a property of a method.

A method's entry says how its PEFT configuration is built, what sizes it (``lora_r``, ``prompt_tokens``
or nothing) and what bounds that size, where it can go (linear layers only, the whole encoder), what it
adds to training, and why it cannot run on a quantized base, be merged into the weights or be combined
across tasks (an empty reason: it can). Adding a method is one entry here plus its tests: the code asks
these entries, not names. A builder receives the run's configuration (:class:`~lora_agnews.core.config.Config`,
validated against this table) as ``Settings``.
May import: ``families``. peft and transformers are imported inside the builders and hooks: the configuration
reads this table and stays torch-free (importing peft takes about 3 s and loads bitsandbytes, measured on 2 cores).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from .families import Family, family_targets_regex, in_encoder, in_heads, layer_pattern, parse_targets, usable_positions

Settings = Any  # a Config
ADALORA_COUNT_STEPS = 1000  # AdaLoRA's schedule length when a model is built for counting or loading only
SEQ_CLS = "SEQ_CLS"  # PEFT's task type of a sequence classifier (PeftModelForSequenceClassification)


@dataclass(frozen=True)
class PeftInputs:
    """What a builder needs beside the configuration: the model it wraps and where the method goes."""

    model: Any  # the transformers model, its head already set up
    family: Family
    heads: tuple[str, ...]  # PEFT's modules_to_save: the head, trained in full by every method
    targets: str  # regex of the adapted modules ("" for whole-encoder methods, which choose their own)
    total_steps: int | None = None  # the training length (AdaLoRA's rank schedule); None when only counting


Builder = Callable[[Settings, PeftInputs], Any]


@dataclass(frozen=True)
class Limit:
    """The largest size a method can take whatever the budget: ``bound(cfg, model_cfg)``, and why, for the refusal."""

    bound: Callable[[Settings, Any], int]
    why: str


@dataclass(frozen=True)
class Method:
    """One PEFT method and the properties the code asks instead of its name.

    ``peft`` builds PEFT's configuration; None marks a hand-written method (BitFit) that trains the
    base model's own parameters named ``*<base_suffix>`` and is saved as a transformers model.
    ``limit`` bounds the size whatever the budget (None: unbounded). ``card`` is what the model card says
    the method trained. ``lora``: LoRA factors, so ``lora_variant`` applies and PEFT's own merge unwraps
    the head. ``init_from_base``: initialised from the base weights, which changes values, never shapes.
    ``task_type``: PEFT's ``task_type`` in the configuration the method trains with (a saved adapter's file
    may say otherwise for PEFT's standard load: ``adapter.standard_load_gap``). ``check`` names what is
    wrong with a configuration for this method ("" when nothing); ``size_resets``: keys set when counting
    varies the size, so the configuration stays valid at sizes 1 and 2; ``callbacks``: the Trainer
    callbacks training the model needs.
    """

    name: str
    title: str  # the one display name: tables, figures, model cards
    peft: Builder | None
    card: Callable[[Settings], str]
    size_key: str | None = "lora_r"
    limit: Limit | None = None
    lora: bool = False
    init_from_base: bool = False
    linear_only: bool = False  # PEFT adapts linear layers only (no word_embeddings)
    whole_encoder: bool = False  # lora_targets does not apply
    base_suffix: str = ""
    not_on_quantized: str = ""  # why it cannot start from, or train on, a quantized base
    not_mergeable: str = ""  # why it cannot be folded into the base weights
    not_combinable: str = "it has no LoRA factors for add_weighted_adapter to combine"  # multi-task merging
    task_type: str | None = None
    check: Callable[[Settings], str] = lambda cfg: ""
    size_resets: tuple[tuple[str, Any], ...] = ()
    callbacks: Callable[[Any], list[Any]] = lambda model: []

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


def _adalora_check(cfg: Settings) -> str:
    if cfg.adalora_target_r > cfg.lora_r:
        return (f"parameter 'adalora_target_r' ({cfg.adalora_target_r}) must not exceed the initial rank "
                f"lora_r ({cfg.lora_r}).")
    return ""


def _adalora_callbacks(model: Any) -> list[Any]:
    from transformers import TrainerCallback

    class AdaLoraAllocation(TrainerCallback):
        """AdaLoRA's rank allocation after every optimizer step (gradients still present, as PEFT asks).

        The rank pattern PEFT records is cleared again: with it set, every save would slice the pruned
        ranks out of the state dict and a reload would rescale by the smaller rank. Saved and reloaded
        at the initial rank (pruned singular values are zeros), the adapter predicts exactly as trained.
        """

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model.base_model.update_and_allocate(state.global_step)
            for peft_config in model.peft_config.values():
                peft_config.rank_pattern = None

    return [AdaLoraAllocation()]


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

    roles = parse_targets(cfg.target_modules).roles
    ffn = family_targets_regex(at.family, ["ffn_out"], cfg.layers) if "ffn_out" in roles else []
    return IA3Config(target_modules=at.targets, feedforward_modules=ffn, modules_to_save=list(at.heads))


def _layernorm(cfg: Settings, at: PeftInputs) -> Any:
    """Every LayerNorm of the encoder (of ``lora_layers`` when set), never the head's."""
    from peft import LNTuningConfig
    from torch import nn

    layer_re = re.compile(at.family.layer_prefix(layer_pattern(cfg.layers))) if cfg.layers is not None else None
    norms = [n for n, m in at.model.named_modules() if isinstance(m, nn.LayerNorm) and in_encoder(at.model, n)
             and not in_heads(n, at.heads) and (layer_re is None or layer_re.match(n))]
    return LNTuningConfig(target_modules="^(?:" + "|".join(re.escape(n) for n in norms) + ")$",
                          modules_to_save=list(at.heads))


def _prompt(cfg: Settings, at: PeftInputs) -> Any:
    from peft import PromptTuningConfig

    config = at.model.config
    return PromptTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=cfg.prompt_tokens, token_dim=config.hidden_size,
                              num_transformer_submodules=1, num_attention_heads=config.num_attention_heads,
                              num_layers=config.num_hidden_layers, prompt_tuning_init="RANDOM",
                              modules_to_save=list(at.heads))


def lokr_limit(in_features: int, out_features: int) -> int:
    """The largest LoKr rank that keeps w2 factored (PEFT's ``r < max(out_k, in_n) / 2``) for one weight."""
    from peft.tuners.lokr.layer import factorization

    _, in_n = factorization(in_features)
    _, out_k = factorization(out_features)
    return math.ceil(max(out_k, in_n) / 2) - 1


def _adapted_shapes(cfg: Settings, model_cfg: Any) -> list[tuple[int, int]]:
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


# PiSSA and OLoRA take the first r singular / orthogonal directions of each adapted weight, so r is at most its
# smaller side (the hidden size, for every role, the head's dense layer and the embeddings). VeRA's update
# ``diag(b) B diag(d) A`` has rank at most that smaller side too: its per-rank cost is one scalar per module, so
# the budget alone would allow ranks of 10^5 (all compute, no expressiveness).
HIDDEN = Limit(lambda cfg, model_cfg: int(model_cfg.hidden_size),
               "the hidden size: the smaller side of the adapted weights")
# Prompt tokens share the position embeddings with the text.
POSITIONS = Limit(lambda cfg, model_cfg: max(0, usable_positions(model_cfg) - cfg.max_length),
                  "the positions left after max_length")
# LoKr's update is ``kron(w1, w2_a w2_b)`` (each weight's sides factored near their square roots: 768 = 24 x 32);
# from r of half w2's larger side on, PEFT trains w2 in full and the count stops growing with r, so r stays
# below that (15 for a 768 x 768 weight).
LOKR = Limit(lambda cfg, model_cfg: min(lokr_limit(i, o) for i, o in _adapted_shapes(cfg, model_cfg)),
             "below half of w2's larger side: from there PEFT trains w2 in full")


def _lora_card(init: str) -> Callable[[Settings], str]:
    return lambda c: f"{init}r={c.lora_r}, alpha={c.lora_alpha}, {c.lora_variant}, targets {c.lora_targets}"


def _ranked_card(c: Settings) -> str:
    return f"r={c.lora_r}, targets {c.lora_targets}"


_RESIDUAL = "it is trained against residual base weights of its own (its initialisation changes the base)"
_LYCORIS = ("PEFT's {} (LyCORIS) layers have no quantized version: they read the base weight's shape, which 4-bit "
            "storage packs")

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lora", "LoRA", _lora(True), _lora_card(""), lora=True, not_combinable=""),
    Method("pissa", "PiSSA", _lora("pissa"), _lora_card("PiSSA initialisation, "), limit=HIDDEN, lora=True,
           init_from_base=True, not_combinable=_RESIDUAL,
           not_on_quantized="PiSSA initialises the adapter from an SVD of the full-precision base weights and "
                            "subtracts it from them (PEFT refuses it on a quantized base: the residual would be "
                            "rounded again)"),
    Method("olora", "OLoRA", _lora("olora"), _lora_card("OLoRA initialisation, "), limit=HIDDEN, lora=True,
           init_from_base=True, not_combinable=_RESIDUAL,
           not_on_quantized="OLoRA initialises the adapter from a QR decomposition of the full-precision base "
                            "weights and subtracts it from them; on a quantized base PEFT re-quantizes the "
                            "residual, a second rounding that a rebuilt base does not reproduce"),
    Method("adalora", "AdaLoRA", _adalora, linear_only=True,
           card=lambda c: f"initial r={c.lora_r}, target r={adalora_target_r(c)}, alpha={c.lora_alpha}, "
                          f"targets {c.lora_targets}",
           check=_adalora_check, size_resets=(("adalora_target_r", 0),), callbacks=_adalora_callbacks),
    Method("vera", "VeRA", _vera, _ranked_card, limit=HIDDEN, linear_only=True),
    Method("loha", "LoHa", _loha, _ranked_card, linear_only=True, not_on_quantized=_LYCORIS.format("LoHa")),
    Method("lokr", "LoKr", _lokr, _ranked_card, limit=LOKR, linear_only=True,
           not_on_quantized=_LYCORIS.format("LoKr")),
    Method("ia3", "(IA)³", _ia3, lambda c: f"targets {c.lora_targets}", size_key=None, linear_only=True),
    Method("bitfit", "BitFit", None, lambda c: "the encoder's biases", size_key=None, whole_encoder=True,
           base_suffix=".bias"),
    Method("layernorm", "LayerNorm tuning", _layernorm, lambda c: "the encoder's LayerNorms", size_key=None,
           whole_encoder=True),
    Method("prompt", "prompt tuning", _prompt, lambda c: f"{c.prompt_tokens} virtual tokens", size_key="prompt_tokens",
           limit=POSITIONS, whole_encoder=True, task_type=SEQ_CLS,
           not_mergeable="prompt tuning adds virtual tokens to the input, not a change of any weight"),
)}
