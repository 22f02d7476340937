"""The base encoder: its transformers config (known offline for the supported checkpoints), its tokenizer, and the
encoder loaded with a fresh classification head as wide as the task has classes.

Architectures known without network (:func:`known_config`) have their hub checkpoints' shapes, so counting and
random initialisation work offline. What goes on top is :mod:`lora_agnews.core.heads` and the method
(:mod:`lora_agnews.core.build`).
May import: ``paths``, ``families``, ``tasks``, ``config``, ``checkpoints`` and ``dataset``. transformers and
tokenizers are imported where a config, tokenizer or model is made: importing transformers' auto classes takes about
1 s after torch (measured on 2 cores), and the training module, which imports this one, also serves commands that
only read records.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch import nn

from .checkpoints import MINILM_ID, resolve_model_path
from .config import Config
from .dataset import load_task, task_labels, task_multi_label
from .families import Family, family_of, supported_families
from .paths import ProjectError, interactive
from .tasks.registry import label_config

TINY_ROBERTA = "tiny-roberta"


class ModelError(ProjectError):
    """The model or tokenizer cannot be had; the message says how to point at a local copy."""


def known_config(name: str, labels: Sequence[str], vocab_size: int | None = None, multi_label: bool = False) -> Any:
    """Architectures known without network, so counting and random init work offline.

    Shapes are those of the hub checkpoints' config.json (hidden size, layers, FFN size, vocabulary,
    positions), so frozen and trainable counts match the pretrained models exactly. ``labels``: the
    task's class names, which set the head's width and the config's ``id2label``.
    """
    from transformers import (BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, MPNetConfig,
                              RobertaConfig, XLMRobertaConfig)

    common = label_config(labels, multi_label)
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


def model_config(cfg: Config, vocab_size: int | None = None, labels: Sequence[str] | None = None,
                 multi_label: bool | None = None) -> Any:
    """The encoder's transformers config with the head sized and named for the task (default: the configuration's).

    ``multi_label`` (default: the configuration's task's kind) sets ``problem_type`` for label sets.
    """
    from transformers import AutoConfig

    labels, multi_label = _task_head(cfg, labels, multi_label)
    cfg_known = known_config(cfg.model_name, labels, vocab_size=vocab_size, multi_label=multi_label)
    if cfg_known is not None and not Path(cfg.model_name).is_dir():
        return cfg_known
    try:
        return AutoConfig.from_pretrained(resolve_model_path(cfg.model_name), **label_config(labels, multi_label))
    except OSError as exc:
        raise _hub_error(cfg.model_name, exc) from None


def _task_head(cfg: Config, labels: Sequence[str] | None, multi_label: bool | None) -> tuple[tuple[str, ...], bool]:
    """The head's label names and kind: as given, else the configuration's task's (a saved adapter passes its record)."""
    if multi_label is None:
        multi_label = task_multi_label(cfg) if labels is None else False
    return (tuple(labels) if labels is not None else task_labels(cfg)), bool(multi_label)


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
    """The run's tokenizer: ``tokenizer`` (default the encoder's own), or ``local``, built from the task's rows."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or cfg.model_name
    if source == "local":
        # Built from the whole training file, so the vocabulary (and the parameter count of LoRA
        # on word embeddings) does not change with the seed's validation split.
        return build_local_tokenizer(load_task(cfg)[0]["text"].tolist())
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(source))
    except (OSError, ValueError) as exc:
        raise _hub_error(source, exc) from None


def with_attention(make: Any) -> nn.Module:
    """``make("sdpa")``, or ``make("eager")`` for architectures without SDPA attention (MPNet, DeBERTa-v2)."""
    try:
        return make("sdpa")
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc):
            raise
        return make("eager")


def load_base(cfg: Config, vocab_size: int | None, pad_token_id: int | None,
              labels: Sequence[str] | None = None, multi_label: bool | None = None) -> nn.Module:
    """The encoder with a fresh head as wide as the task has classes (random or pretrained weights).

    ``labels``: the class names; default the configuration's task's (a saved adapter passes its own record).
    ``multi_label``: the head's kind (``problem_type``); default the configuration's task's, or single-label
    when ``labels`` are given without it. The head itself is the same K outputs either way.
    """
    from transformers import AutoModelForSequenceClassification

    labels, multi_label = _task_head(cfg, labels, multi_label)

    if cfg.init == "random":
        config = model_config(cfg, vocab_size=vocab_size, labels=labels, multi_label=multi_label)
        if vocab_size is not None:
            config.vocab_size = vocab_size
        if pad_token_id is not None:
            config.pad_token_id = pad_token_id

        def from_config(attention: str) -> nn.Module:
            config._attn_implementation = attention
            return AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)

        return with_attention(from_config)
    path = resolve_model_path(cfg.model_name)
    if not interactive():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars in CI logs help nobody
    try:
        model, info = with_attention(lambda attention: AutoModelForSequenceClassification.from_pretrained(
            path, **label_config(labels, multi_label), attn_implementation=attention, output_loading_info=True))
        # What the checkpoint lacks is initialised at random here: a saved adapter must hold it for PEFT's own
        # load of that checkpoint to give the same model (adapter.standard_load_gap).
        model.lora_agnews_fresh = tuple(sorted(info["missing_keys"]))
        return model
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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """transformers' warnings silenced within the block (loading a checkpoint into a new head, PEFT's wrapping)."""
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


def family(model: nn.Module) -> Family:
    """The placement family of a transformers model; an unsupported one is a ModelError naming the supported."""
    kind = model.config.model_type
    found = family_of(kind)
    if found is None:
        raise ModelError(f"'{kind}' encoders are not supported (heads and LoRA placements are defined for "
                         f"{supported_families()}). Use a model of one of these families.")
    return found


