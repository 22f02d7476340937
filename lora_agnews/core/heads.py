"""The classification heads, and which modules train in full with each.

The budget (1M trainable parameters) includes the classification head, so the head is part of the model
definition: ``default`` is the architecture's own head trained in full (for RoBERTa a 768x768 dense layer plus
the output projection, 593,668 parameters), ``linear`` is one linear layer on the first token, ``lora-dense``
freezes the head's dense layer and adapts it with the method. :func:`apply_head` changes a transformers model in
place and returns the :class:`HeadPlan` (what PEFT trains in full, what gets the method's adapter) that every
method's configuration is made from. Heads are defined for the RoBERTa, BERT, MPNet, ELECTRA, DeBERTa-v2 and
DistilBERT families, by their head style (:data:`lora_agnews.core.families.HEAD_STYLES`).
May import: ``encoders``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .encoders import family


class FirstTokenLinearHead(nn.Module):
    """Dropout + one linear layer on the first token's final hidden state (``head linear``)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, features: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.out_proj(self.dropout(features[:, 0, :]))


class FirstTokenPooler(nn.Module):
    """Replaces a pooler (BERT's tanh pooler, DeBERTa's context pooler): the linear classifier sees the first token."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


class SignSplitLinear(nn.Module):
    """DistilBERT's ``linear`` head, part 1 (replaces ``pre_classifier``): dropout + one linear layer.

    DistilBERT's forward applies a ReLU between ``pre_classifier`` and ``classifier`` that cannot be
    removed from outside, so this returns ``[z, -z]``; after the ReLU, :class:`SignMerge` returns
    ``relu(z) - relu(-z) = z``. The head is then exactly ``out_proj(dropout(first token))``, with
    ``out_proj``'s parameters (hidden x labels + labels) its only ones, as for the other families.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.out_proj(self.dropout(features))
        return torch.cat([z, -z], dim=-1)


class SignMerge(nn.Module):
    """DistilBERT's ``linear`` head, part 2 (replaces ``classifier``; no parameters): ``[a, b] -> a - b``."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        half = features.shape[-1] // 2
        return features[..., :half] - features[..., half:]


class OutProj(nn.Module):
    """DistilBERT's ``lora-dense`` head: its ``classifier`` moved to ``classifier.out_proj`` (weights kept).

    PEFT picks ``modules_to_save`` by name suffix, and ``classifier`` is also the end of
    ``pre_classifier`` (the dense layer that gets LoRA here); ``classifier.out_proj`` is not.
    """

    def __init__(self, out_proj: nn.Module):
        super().__init__()
        self.out_proj = out_proj

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(features)


@dataclass(frozen=True)
class HeadPlan:
    """Which modules PEFT trains in full and which extra ones get LoRA, per head choice."""

    modules_to_save: tuple[str, ...]
    lora_extra: tuple[str, ...]  # regex alternatives for head modules adapted with LoRA


def apply_head(model: nn.Module, head: str) -> HeadPlan:
    """Adjust ``model`` in place for the head choice and say what is trained.

    ``default``: the family's own head, trained in full (RoBERTa/MPNet/ELECTRA: classifier.dense +
    out_proj; BERT: the linear classifier, its pretrained pooler frozen; DeBERTa-v2: the context
    pooler + classifier; DistilBERT: pre_classifier + classifier). ``linear``: one linear layer on
    the first token. ``lora-dense``: the head's dense layer frozen and adapted by LoRA (BERT: the
    pooler's), the output layer trained.
    """
    style = family(model).head
    config = model.config
    labels = config.num_labels
    if style == "dense-out_proj":
        if head == "default":
            return HeadPlan(("classifier",), ())
        if head == "linear":
            drop = getattr(config, "classifier_dropout", None) or config.hidden_dropout_prob
            model.classifier = FirstTokenLinearHead(config.hidden_size, labels, drop)
            return HeadPlan(("classifier",), ())
        return HeadPlan(("classifier.out_proj",), (r"classifier\.dense",))
    if style == "pooler":
        prefix = model.base_model_prefix
        if head == "default":
            return HeadPlan(("classifier",), ())
        if head == "linear":
            getattr(model, prefix).pooler = FirstTokenPooler()
            return HeadPlan(("classifier",), ())
        return HeadPlan(("classifier",), (rf"{prefix}\.pooler\.dense",))
    if style == "context-pooler":
        if head == "default":
            return HeadPlan(("pooler", "classifier"), ())
        if head == "linear":
            model.pooler = FirstTokenPooler()
            return HeadPlan(("classifier",), ())
        return HeadPlan(("classifier",), (r"pooler\.dense",))
    # pre-classifier (DistilBERT)
    if head == "default":
        return HeadPlan(("pre_classifier", "classifier"), ())
    if head == "linear":
        model.pre_classifier = SignSplitLinear(config.hidden_size, labels, config.seq_classif_dropout)
        model.dropout = nn.Identity()  # the feature dropout is SignSplitLinear's
        model.classifier = SignMerge()
        return HeadPlan(("pre_classifier",), ())
    model.classifier = OutProj(model.classifier)
    return HeadPlan(("classifier.out_proj",), (r"pre_classifier",))
