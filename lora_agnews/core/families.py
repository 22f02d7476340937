"""Encoder families and where an adapter goes in each: roles, presets, module-name patterns, the position table.

``lora_targets`` is a comma-separated list; each item is one of

* a **role**, the same matrix in every supported encoder whatever its module is called:
  ``query``, ``key``, ``value`` (attention projections), ``attn_out`` (attention output),
  ``ffn_in`` (feed-forward up-projection), ``ffn_out`` (feed-forward down-projection);
* a **preset**: ``attention`` = query,key,value; ``all-linear`` = all six roles;
* ``word_embeddings``: LoRA on the token-embedding matrix;
* any other name: a module name, meaning every module in the encoder layers whose
  name ends with it (``dense`` = every ``dense`` of the encoder layers: attention output, FFN in
  and FFN out; never the pooler's or the head's, which are outside the layers).

A role becomes one anchored pattern per family (``encoder.layer.<i>.attention.self.query`` for
RoBERTa, ``encoder.layer.<i>.attention.attn.q`` for MPNet, ...), so it selects exactly one
module per layer (on BERT-style encoders the roles ``query``, ``key``, ``value`` and the module names
of that name select the same modules). Pure data and regular expressions (no torch).
May import: nothing of the package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

ROLES: tuple[str, ...] = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
PRESETS: dict[str, tuple[str, ...]] = {"attention": ("query", "key", "value"), "all-linear": ROLES}
EMBEDDINGS = "word_embeddings"

# Head styles (what ``heads.apply_head`` does for default / linear / lora-dense):
#   dense-out_proj: classifier = dense + out_proj on the first token (RoBERTa, MPNet, ELECTRA)
#   pooler:         the base model's pooler (dense + tanh) + a linear classifier (BERT)
#   context-pooler: a top-level pooler (dense + activation) + a linear classifier (DeBERTa-v2)
#   pre-classifier: pre_classifier (dense) + ReLU + a linear classifier (DistilBERT)
HEAD_STYLES = ("dense-out_proj", "pooler", "context-pooler", "pre-classifier")

_BERT_ROLES = {"query": r"attention\.self\.query", "key": r"attention\.self\.key",
               "value": r"attention\.self\.value", "attn_out": r"attention\.output\.dense",
               "ffn_in": r"intermediate\.dense", "ffn_out": r"output\.dense"}


@dataclass(frozen=True)
class Family:
    """One encoder family: its ``model_type`` values, where its layers are, its role modules and head."""

    name: str
    model_types: tuple[str, ...]
    layers: str  # regex of the layer list's module path, e.g. r"encoder\.layer"
    roles: dict[str, str]  # role -> regex of the module path inside one layer
    head: str  # one of HEAD_STYLES

    def role_pattern(self, role: str, layer_pat: str = r"\d+") -> str:
        """Anchored regex of one role's modules (the model's own prefix, e.g. ``roberta.``, allowed)."""
        return rf"(?:.*\.)?{self.layers}\.{layer_pat}\.{self.roles[role]}"

    def layer_prefix(self, layer_pat: str = r"\d+") -> str:
        return rf"(?:.*\.)?{self.layers}\.{layer_pat}\."


FAMILIES: tuple[Family, ...] = (
    Family("RoBERTa", ("roberta", "xlm-roberta", "camembert"), r"encoder\.layer", _BERT_ROLES, "dense-out_proj"),
    Family("BERT", ("bert",), r"encoder\.layer", _BERT_ROLES, "pooler"),
    Family("MPNet", ("mpnet",), r"encoder\.layer",
           {"query": r"attention\.attn\.q", "key": r"attention\.attn\.k", "value": r"attention\.attn\.v",
            "attn_out": r"attention\.attn\.o", "ffn_in": r"intermediate\.dense", "ffn_out": r"output\.dense"},
           "dense-out_proj"),
    Family("ELECTRA", ("electra",), r"encoder\.layer", _BERT_ROLES, "dense-out_proj"),
    Family("DeBERTa-v2", ("deberta-v2",), r"encoder\.layer",
           {**_BERT_ROLES, "query": r"attention\.self\.query_proj", "key": r"attention\.self\.key_proj",
            "value": r"attention\.self\.value_proj"}, "context-pooler"),
    Family("DistilBERT", ("distilbert",), r"transformer\.layer",
           {"query": r"attention\.q_lin", "key": r"attention\.k_lin", "value": r"attention\.v_lin",
            "attn_out": r"attention\.out_lin", "ffn_in": r"ffn\.lin1", "ffn_out": r"ffn\.lin2"},
           "pre-classifier"),
)


def family_of(model_type: str) -> Family | None:
    """The family of a transformers ``model_type`` (``config.model_type``), or None when unsupported."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


def supported_families() -> str:
    """``RoBERTa (roberta, xlm-roberta, camembert), BERT (bert), ...`` for error messages."""
    return ", ".join(f"{f.name} ({', '.join(f.model_types)})" for f in FAMILIES)


@dataclass(frozen=True)
class Targets:
    """``lora_targets`` read: roles (presets expanded), plain module names, word embeddings or not."""

    roles: tuple[str, ...]
    names: tuple[str, ...]
    embeddings: bool


def parse_targets(tokens: Iterable[str]) -> Targets:
    """Split ``lora_targets`` items into roles (presets expanded, order kept, no repeats) and module names."""
    roles: list[str] = []
    names: list[str] = []
    embeddings = False
    for token in (t.strip() for t in tokens):
        if not token:
            continue
        if token == EMBEDDINGS:
            embeddings = True
        elif token in PRESETS or token in ROLES:
            roles += [r for r in PRESETS.get(token, (token,)) if r not in roles]
        elif token not in names:
            names.append(token)
    return Targets(tuple(roles), tuple(names), embeddings)


def layer_pattern(layers: list[int] | None) -> str:
    return r"\d+" if layers is None else "(?:" + "|".join(str(i) for i in layers) + ")"


def family_targets_regex(family: Family, tokens: Iterable[str], layers: list[int] | None = None,
                 head_extra: Iterable[str] = ()) -> str:
    """One regex over module names: the chosen roles and module names in the chosen layers,
    word embeddings if asked, and the head modules LoRA adapts (``head_extra``, regex alternatives)."""
    targets = parse_targets(tokens)
    layer_pat = layer_pattern(layers)
    parts = [family.role_pattern(role, layer_pat) for role in targets.roles]
    if targets.names:  # module names: any module of that name in the chosen layers
        names = "|".join(re.escape(t) for t in targets.names)
        parts.append(rf"{family.layer_prefix(layer_pat)}.*\b(?:{names})")
    if targets.embeddings:
        parts.append(r".*embeddings\.word_embeddings")
    parts += [rf".*{extra}" for extra in head_extra]
    return "^(?:" + "|".join(parts) + ")$"


def unmatched_names(family: Family, tokens: Iterable[str], module_names: Iterable[str]) -> list[str]:
    """Module-name items of ``lora_targets`` that match no module in the encoder layers (typos)."""
    targets = parse_targets(tokens)
    layered = [n for n in module_names if re.match(family.layer_prefix(), n)]
    return [t for t in targets.names if not any(re.fullmatch(rf"{family.layer_prefix()}.*\b{re.escape(t)}", n)
                                                 for n in layered)]


def role_of(family: Family, module_name: str) -> str | None:
    """The role of an adapted module (``...layer.3.attention.attn.q`` -> ``query``), None for others."""
    for role in ROLES:
        if re.fullmatch(family.role_pattern(role), module_name):
            return role
    return None


def in_encoder(model: Any, name: str) -> bool:
    """Whether module or parameter ``name`` belongs to the encoder (not the head beside it)."""
    return name.startswith(model.base_model_prefix + ".")


def in_heads(name: str, heads: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of the head modules, or inside one."""
    return any(name == h or name.startswith(h + ".") for h in heads)


# Model types whose position ids start after the padding index (positions 0..pad are never used), so
# max_position_embeddings - pad - 1 positions hold a sequence: RoBERTa's family and MPNet (its embeddings
# count from padding_idx + 1 too; without the offset a 386-token prompt overruns MPNet's table at 128 tokens)
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet")


def usable_positions(model_cfg: Any) -> int:
    """How many tokens one sequence can hold: the position table less what the architecture reserves.

    RoBERTa-style models and MPNet number positions from ``padding_idx + 1``, so roberta-base's 514 entries
    hold 512 tokens; a longer input indexes past the table (an IndexError deep in the embeddings).
    """
    offset = (model_cfg.pad_token_id or 0) + 1 if model_cfg.model_type in PADDING_OFFSET_POSITIONS else 0
    return int(model_cfg.max_position_embeddings) - offset
