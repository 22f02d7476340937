"""A trained adapter as a plain transformers checkpoint: ``pipeline("text-classification", model=DIR)``
works without peft installed (peft issue #1488: the pipeline does not take a PEFT model).

The adapter is loaded, its trained parameters are merged into the base weights (``build.merge``),
and the result is written as the architecture's own ``*ForSequenceClassification`` checkpoint
(``model.safetensors``, ``config.json`` with the class names, the tokenizer, a hub model card).

The ``linear`` head (one linear layer ``z = W h + b`` on the first token) is this project's module,
not a transformers one, so it is expressed with the family's own head modules, exactly or to
float32 rounding:

* tanh heads (RoBERTa/MPNet ``classifier.dense -> tanh -> out_proj``, BERT ``pooler.dense -> tanh ->
  classifier``): the dense layer is ``eps * I`` (no bias) and the output weight ``W / eps``, with ``eps`` a
  power of two (the scalings are exact) such that ``|eps * h| <= 2**-12`` for every feature the encoder's
  final LayerNorm can produce (:func:`feature_bound`; ``eps = 2**-20`` unless features may exceed 256). There
  ``tanh(u) = u (1 - u**2/3 + ...)`` equals ``u`` to float32 rounding (``u**2/3 < 2**-25``).
* gelu (ELECTRA's head) and ReLU (DistilBERT's ``pre_classifier``) heads: the dense layer's rows are
  ``[W; -W; 0]`` (biases ``[b; -b; 0]``) and the output layer ``[I, -I, 0]``: ``gelu(z) - gelu(-z) = z``
  and ``relu(z) - relu(-z) = z`` exactly (needs twice the labels <= the hidden size).
* DeBERTa-v2's context pooler takes ``pooler_hidden_act``: ``linear`` (the identity) and ``dense = I``.

Whatever the head, the export ends with a self-check: the written directory is loaded through
``transformers.pipeline`` and its logits on :data:`CHECK_TEXTS` must equal ``predict``'s (the adapter
unmerged) within :data:`ATOL` + :data:`RTOL` * |logit|, or nothing is written. The directory is built
in a temporary sibling and renamed into place: never a half-written export.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .adapter import check_adapter_dir, load_adapter, predict_logits_for_texts, record_thresholds
from .build import MergeError, dequantize, merge
from .card import write_export_card
from .encoders import family, quiet, with_attention
from .methods import METHODS
from .paths import interactive, read_json, say, write_json
from .runs import atomic_directory, now
from .tasks.agnews import LABELS, normalize_text

LABEL_NAMES: tuple[str, ...] = LABELS  # the class names written to config.json (when the model has none)
EPS = 2.0 ** -20  # scale of the tanh heads' identity (see the module docstring)
ATOL = 1e-4  # self-check: |exported logit - predict's logit| <= ATOL + RTOL * |predict's logit|
RTOL = 1e-4
CHECK_TEXTS: tuple[str, ...] = (
    "Stocks rally as oil prices fall on strong earnings",
    "Striker scores twice as champions win the cup final",
    "New chip doubles battery life of laptops, company says",
    "UN envoy calls for ceasefire talks after border clashes",
    "Space agency delays launch of weather satellite",
    "Central bank raises rates",
)
# Written last into every export: what it holds, so --overwrite replaces an earlier export and nothing else.
MANIFEST_FILE = "lora_agnews_export.json"
TANH_HEADS = ("roberta", "xlm-roberta", "camembert", "mpnet", "bert")  # model types whose head applies tanh
GELU_HEADS = ("electra",)


class ExportError(ValueError):
    """The adapter cannot be exported as a plain checkpoint, or the output directory is not free."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote and how closely the written model reproduces ``predict``."""

    out_dir: Path
    architecture: str
    labels: tuple[str, ...]
    max_abs_diff: float  # largest |exported logit - predict's logit| on CHECK_TEXTS
    scale: float | None = None  # eps of a linear head in a tanh head (dense eps*I, output W/eps); else None


def class_names(config: Any) -> tuple[str, ...]:
    """The class names for ``config.json``: the model's own ``id2label`` when it names the classes, else
    :data:`LABEL_NAMES` (transformers' placeholders ``LABEL_0``... name nothing)."""
    n = int(config.num_labels)
    own = getattr(config, "id2label", None) or {}
    names = tuple(str(own.get(i, own.get(str(i), ""))) for i in range(n))
    if all(names) and not all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return names
    if len(LABEL_NAMES) != n:
        raise ExportError(f"the model has {n} classes but no class names, and the project's label names "
                          f"{list(LABEL_NAMES)} are {len(LABEL_NAMES)}; set id2label in the model's config.")
    return LABEL_NAMES


def _sign_split(w: torch.Tensor, b: torch.Tensor, width: int, where: str) -> dict[str, torch.Tensor]:
    """Dense rows ``[W; -W; 0]`` and an output layer ``[I, -I, 0]``: ``act(z) - act(-z) = z`` for ReLU and gelu."""
    labels, hidden = w.shape
    if 2 * labels > width:
        raise ExportError(f"the {where} head cannot hold a linear head of {labels} classes exactly (needs "
                          f"2 x {labels} <= its width {width}); export a model trained with -p head default.")
    dense_w = w.new_zeros(width, hidden)
    dense_b = b.new_zeros(width)
    dense_w[:labels], dense_w[labels:2 * labels] = w, -w
    dense_b[:labels], dense_b[labels:2 * labels] = b, -b
    out_w = w.new_zeros(labels, width)
    eye = torch.eye(labels, dtype=w.dtype, device=w.device)
    out_w[:, :labels], out_w[:, labels:2 * labels] = eye, -eye
    return {"dense.weight": dense_w, "dense.bias": dense_b, "out.weight": out_w, "out.bias": b.new_zeros(labels)}


def feature_bound(merged: nn.Module) -> float | None:
    """A bound on every first-token feature, whatever the input: the encoder ends in a LayerNorm, whose
    normalised outputs satisfy ``|x_i| <= sqrt(h - 1)``, so ``|gamma_i x_i + beta_i| <= sqrt(h - 1) max|gamma|
    + max|beta|``. None when the base model has no LayerNorm to bound it by."""
    base = getattr(merged, merged.base_model_prefix, merged)
    norms = [m for m in base.modules() if isinstance(m, nn.LayerNorm) and m.weight is not None]
    if not norms:
        return None
    last = norms[-1]
    hidden = last.weight.numel()
    beta = float(last.bias.detach().abs().max()) if last.bias is not None else 0.0
    return (hidden - 1) ** 0.5 * float(last.weight.detach().abs().max()) + beta


def identity_scale(merged: nn.Module) -> float:
    """:data:`EPS`, or a smaller power of two when the features may reach 256 (``EPS * bound <= 2**-12``)."""
    bound = feature_bound(merged)
    if bound is None or bound <= 2.0 ** 8:
        return EPS
    return min(EPS, 2.0 ** (-12 - math.ceil(math.log2(bound))))


def _tanh_identity(w: torch.Tensor, hidden: int, eps: float) -> dict[str, torch.Tensor]:
    """Dense ``eps * I`` (no bias) and output weight ``W / eps``: ``tanh(eps h) / eps = h`` in float32."""
    return {"dense.weight": torch.eye(hidden, dtype=w.dtype, device=w.device) * eps,
            "dense.bias": w.new_zeros(hidden), "out.weight": w / eps}


def plain_state(merged: nn.Module, head: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The merged model's tensors under the family's own head names, and the config changes they need.

    ``default`` heads are the family's own modules already; ``lora-dense`` is too once merged (except
    DistilBERT's, whose output layer was moved to ``classifier.out_proj``); ``linear`` is re-expressed as the
    module docstring says.
    """
    style = family(merged).head
    kind = merged.config.model_type
    state = dict(merged.state_dict())
    hidden = int(merged.config.hidden_size)
    changes: dict[str, Any] = {}
    if head == "lora-dense" and style == "pre-classifier":
        state["classifier.weight"] = state.pop("classifier.out_proj.weight")
        state["classifier.bias"] = state.pop("classifier.out_proj.bias")
    if head != "linear":
        return state, changes
    if style == "dense-out_proj":
        w, b = state.pop("classifier.out_proj.weight"), state.pop("classifier.out_proj.bias")
        if kind in TANH_HEADS:
            parts = {**_tanh_identity(w, hidden, identity_scale(merged)), "out.bias": b}
        elif kind in GELU_HEADS:
            parts = _sign_split(w, b, hidden, f"{kind} (gelu)")
        else:
            raise ExportError(f"the activation of the '{kind}' classification head is not known to the export; "
                              f"export a model trained with -p head default.")
        state.update({"classifier.dense.weight": parts["dense.weight"], "classifier.dense.bias": parts["dense.bias"],
                      "classifier.out_proj.weight": parts["out.weight"], "classifier.out_proj.bias": parts["out.bias"]})
    elif style == "pooler":
        w = state["classifier.weight"]
        parts = _tanh_identity(w, hidden, identity_scale(merged))
        prefix = merged.base_model_prefix
        state.update({f"{prefix}.pooler.dense.weight": parts["dense.weight"],
                      f"{prefix}.pooler.dense.bias": parts["dense.bias"], "classifier.weight": parts["out.weight"]})
    elif style == "context-pooler":
        w = state["classifier.weight"]
        state["pooler.dense.weight"] = torch.eye(hidden, dtype=w.dtype, device=w.device)
        state["pooler.dense.bias"] = w.new_zeros(hidden)
        changes = {"pooler_hidden_act": "linear", "pooler_hidden_size": hidden}
    else:  # pre-classifier (DistilBERT): dense -> ReLU -> classifier
        w, b = state.pop("pre_classifier.out_proj.weight"), state.pop("pre_classifier.out_proj.bias")
        parts = _sign_split(w, b, int(merged.config.dim), "DistilBERT (ReLU)")
        state.update({"pre_classifier.weight": parts["dense.weight"], "pre_classifier.bias": parts["dense.bias"],
                      "classifier.weight": parts["out.weight"], "classifier.bias": parts["out.bias"]})
    return state, changes


def to_plain(merged: nn.Module, head: str) -> nn.Module:
    """The architecture's own ``*ForSequenceClassification`` holding ``merged``'s weights (same logits)."""
    from transformers import AutoModelForSequenceClassification

    state, changes = plain_state(merged, head)
    config = copy.deepcopy(merged.config)
    for key, value in changes.items():
        setattr(config, key, value)
    names = class_names(config)
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}

    def make(attention: str) -> nn.Module:
        config._attn_implementation = attention
        return AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)

    with quiet():
        plain = with_attention(make)
    result = plain.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(f"the merged '{config.model_type}' model with the '{head}' head does not map onto "
                          f"{type(plain).__name__} (missing {result.missing_keys[:4]}, unexpected "
                          f"{result.unexpected_keys[:4]}); export a model trained with -p head default.")
    plain.config.architectures = [type(plain).__name__]
    return plain.eval()


def check_out_dir(out_dir: Path, adapter_dir: Path, overwrite: bool) -> None:
    """Refuse a file, the adapter or its run directory, and a non-empty ``--out`` unless ``overwrite``
    and it holds an earlier export and nothing else (its manifest lists what export wrote there)."""
    out, adapter = Path(out_dir).resolve(), Path(adapter_dir).resolve()
    if out == adapter or out in adapter.parents:
        raise ExportError(f"--out {out_dir} would replace the adapter {adapter_dir} it is exported from; "
                          f"choose another directory, e.g. --out {adapter.parent / 'exported'}.")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out_dir} is a file; give a directory to write the checkpoint into.")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not overwrite:
        raise ExportError(f"--out {out_dir} exists and is not empty; pass --overwrite to replace an earlier export "
                          f"there, or choose another directory.")
    foreign = foreign_files(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ExportError(f"--out {out_dir} holds files export did not write ({shown}); --overwrite replaces only an "
                          f"earlier export, so nothing was changed: choose another directory.")


def foreign_files(directory: Path) -> list[str]:
    """Entries of ``directory`` that no export wrote: all of them when it has no readable manifest."""
    entries = sorted(p.name for p in Path(directory).iterdir())
    try:
        written = set(read_json(Path(directory) / MANIFEST_FILE).get("files", []))
    except (OSError, ValueError, AttributeError):
        return entries
    return [name for name in entries if name not in written and name != MANIFEST_FILE]


def write_manifest(directory: Path, adapter_dir: Path) -> None:
    """Record what this export wrote (every entry of ``directory``) and from which adapter."""
    files = sorted(p.name for p in Path(directory).iterdir())
    write_json({"adapter": str(Path(adapter_dir).resolve()), "exported": now(), "files": files},
               Path(directory) / MANIFEST_FILE)


def pipeline_logits(directory: Path, texts: Sequence[str]) -> np.ndarray:
    """Raw logits (class-id order) of ``transformers.pipeline("text-classification", model=directory)``."""
    from transformers import pipeline

    with quiet():
        pipe = pipeline("text-classification", model=str(directory), top_k=None, function_to_apply="none",
                        device="cpu")
    label2id = pipe.model.config.label2id
    rows = pipe(list(texts), truncation=True)
    out = np.zeros((len(texts), len(label2id)), dtype=np.float32)
    for i, row in enumerate(rows):
        for entry in row:
            out[i, label2id[entry["label"]]] = entry["score"]
    return out


def check_logits(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest absolute difference; over ``ATOL + RTOL * |expected|`` anywhere is an ExportError."""
    diff = np.abs(got - expected)
    if not np.all(diff <= ATOL + RTOL * np.abs(expected)):
        raise ExportError(f"self-check failed: the exported model's logits differ from predict's by up to "
                          f"{diff.max():.3g} (tolerance {ATOL:g} + {RTOL:g} x |logit|); nothing was written. "
                          f"Please report this with the adapter's lora_agnews_config.json.")
    return float(diff.max())


def head_note(cfg: Any, kind: str, scale: float | None) -> str:
    """One sentence on how the trained head sits in the architecture's own modules."""
    if cfg.head != "linear":
        return f"The `{cfg.head}` head is the architecture's own head module; it is stored as trained (merged)."
    if kind in GELU_HEADS or kind == "distilbert":
        return ("The `linear` head (one linear layer z = Wh + b on the first token) is stored in the architecture's "
                "own head as dense rows [W; -W; 0] and output weights [I, -I, 0], so act(z) - act(-z) = z "
                "(gelu or ReLU) gives z exactly.")
    if kind == "deberta-v2":
        return ("The `linear` head (one linear layer on the first token) is stored as the context pooler with "
                "dense = I and `pooler_hidden_act: linear` (the identity), followed by the trained classifier.")
    power = round(math.log2(scale or EPS))
    return (f"The `linear` head (one linear layer z = Wh + b on the first token) is stored in the architecture's "
            f"own tanh head as dense = 2^{power} I (no bias) and output weights W x 2^{-power}: "
            f"tanh(2^{power} h) x 2^{-power} = h to float32 rounding for every feature the encoder can produce. "
            f"Keep this checkpoint in float32 (or bfloat16): in float16 the scaled output weights overflow.")


def self_check_note(result: ExportResult) -> str:
    """The card's sentence on the self-check the export passed."""
    return f"""Self-check at export: on {len(CHECK_TEXTS)} headlines the logits of this checkpoint (loaded through
`transformers.pipeline`) equal those of the adapter (`python -m lora_agnews predict`) within
{ATOL:g} + {RTOL:g} x |logit| (largest difference measured: {result.max_abs_diff:.2g})."""


LOAD_TIME_KEYS = ("is_local", "local_files_only")  # how this process loaded the tokenizer, not what it is


def _drop_load_time_keys(tokenizer_config: Path) -> None:
    """transformers 5 saves a reloaded tokenizer's loading options; a published checkpoint should not carry them."""
    if tokenizer_config.is_file():
        values = read_json(tokenizer_config)
        write_json({k: v for k, v in values.items() if k not in LOAD_TIME_KEYS}, tokenizer_config)


def export(adapter_dir: Path, out_dir: Path, overwrite: bool = False) -> ExportResult:
    """Write the merged model of ``adapter_dir`` as a plain transformers checkpoint in ``out_dir``.

    Refused before anything is written: a missing adapter (AdapterError), an unmergeable method (prompt
    tuning), an occupied ``out_dir``. Refused after building it in a temporary sibling (which is then
    removed): a self-check that does not reproduce ``predict``'s logits.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    check_adapter_dir(adapter_dir)
    check_out_dir(out_dir, adapter_dir, overwrite)
    if not interactive():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" / "Loading weights" bars help no log
    model, tokenizer, cfg = load_adapter(adapter_dir)
    if cfg.quantize != "none":
        # exported in full precision: the self-check compares with the dequantized model (int8's quantized
        # matmuls also round the activations, which no float32 checkpoint reproduces)
        say(f"{adapter_dir} was trained on a {cfg.quantize} base: it is exported dequantized, in float32")
        model = dequantize(model)
    texts = [normalize_text(t) for t in CHECK_TEXTS]
    expected = predict_logits_for_texts(model, tokenizer, cfg, texts)
    try:
        merged = merge(model, cfg.method)
    except MergeError:
        why = METHODS[cfg.method].not_mergeable or "its parameters are not a change of the weights"
        raise ExportError(f"cannot export {adapter_dir} as a plain transformers model: method {cfg.method!r} cannot be "
                          f"merged into the base model ({why}). Use the adapter as it is: "
                          f"python -m lora_agnews predict --adapter {adapter_dir} \"headline\".") from None
    kind = merged.config.model_type
    plain = to_plain(merged, cfg.head)

    record_thresholds(plain.config, adapter_dir)  # multi-label: config.json says where to cut the sigmoid scores
    scale = identity_scale(merged) if cfg.head == "linear" and kind in TANH_HEADS else None
    architecture, labels = type(plain).__name__, class_names(plain.config)
    del model, merged  # the self-check loads a third copy: keep at most two (roberta-base: 0.5 GB each)
    tokenizer.model_max_length = cfg.max_length  # truncation=True then cuts where training did
    with atomic_directory(out_dir) as tmp:
        plain.save_pretrained(str(tmp))  # safetensors: transformers 5 writes no other format
        del plain
        tokenizer.save_pretrained(str(tmp))
        _drop_load_time_keys(tmp / "tokenizer_config.json")
        diff = check_logits(pipeline_logits(tmp, texts), expected)
        result = ExportResult(out_dir, architecture, labels, diff, scale)
        write_export_card(tmp, cfg, adapter_dir, result, head_note(cfg, kind, scale), self_check_note(result))
        write_manifest(tmp, adapter_dir)
        check_out_dir(out_dir, adapter_dir, overwrite)  # again: files may have appeared in --out meanwhile
    return result
