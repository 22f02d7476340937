"""What a run saves, and how it is loaded and scored again: the adapter directory.

An adapter directory holds the LoRA weights together with the trained head (PEFT's ``modules_to_save``, in the
same ``adapter_model.safetensors``), the tokenizer, the run's config and a hub-style model card
(:mod:`lora_agnews.core.card`), so it is usable on its own: ``python -m lora_agnews predict --adapter DIR
"headline"``. It is written into a temporary sibling and renamed into place, so a crash never leaves a
half-saved adapter behind. A multi-label run adds its decision thresholds, which ``predict`` and an export read
back. May import: ``paths``, ``families``, ``methods``, ``tasks``, ``config``, ``checkpoints``, ``dataset``,
``tokens``, the model's modules (``encoders`` to ``build``), ``evaluate`` and ``runs``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .build import apply_bitfit, text_limit
from .checkpoints import model_identity
from .config import Config, ConfigError, from_dict
from .encoders import load_base, quiet
from .evaluate import predict_logits, softmax
from .families import in_heads
from .heads import apply_head
from .methods import METHODS, SEQ_CLS
from .paths import interactive, read_json, say, write_json
from .precision import resolve_precision
from .quantize import quantize_model, require_quantization
from .runs import atomic_directory
from .tasks.agnews import normalize_text
from .tasks.label_sets import SEPARATOR, check_same_kind, is_multi_label_model
from .tasks.multilabel_scores import apply_thresholds, check_threshold, choose_thresholds, compute_metrics, sigmoid
from .tasks.registry import AGNEWS, TASKS, check_same_labels, model_labels
from .tokens import TokenizedDataset, tokenize

CONFIG_FILE = "lora_agnews_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
HUB_IDS = {"roberta-base": "FacebookAI/roberta-base", "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


class AdapterError(FileNotFoundError):
    """An adapter directory is missing or incomplete."""


def base_fingerprint(model: Any, method: str = "lora") -> str:
    """Checksum of a few frozen base weights: catches a rebuilt random base that differs."""
    digest = hashlib.sha1()
    # LoRA-wrapped modules (e.g. word_embeddings) hold trained lora_* tensors and rename the frozen
    # weight to base_layer.weight: skip the former, undo the latter, so trained and fresh bases agree.
    # A method that trains base parameters in place (BitFit: the biases) has them skipped.
    # Only the encoder's own weights: XLM-RoBERTa lists its (trained) head first.
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    suffix = METHODS[method].base_suffix
    frozen = [(n.replace(".base_layer.", "."), p) for n, p in model.named_parameters()
              if "lora_" not in n and not (suffix and n.endswith(suffix))
              and (prefix == "." or n.startswith(prefix))]
    for name, p in frozen[:4]:
        digest.update(name.encode())
        digest.update(p.detach().float().cpu().numpy().tobytes()[:4096])
    return digest.hexdigest()[:16]


def base_model_id(cfg: Config) -> str:
    """The base model as the hub names it (model cards link to it; a local copy of a known checkpoint is its hub id)."""
    name = model_identity(cfg.model_name)
    return HUB_IDS.get(name, name)


def save_adapter(model: Any, tokenizer: Any, cfg: Config, adapter_dir: Path,
                 thresholds: dict[str, Any] | None = None) -> Path:
    """LoRA weights + head, tokenizer and config, written atomically (temp dir + rename).

    A multi-label model's record says so, with the decision ``thresholds`` chosen on validation, so
    ``predict``, ``export`` and a reload cut the probabilities where the run did.
    """
    adapter_dir = Path(adapter_dir)
    if cfg.init == "pretrained":  # lets PEFT's AutoPeftModel find the base; a random base has no id
        for peft_config in getattr(model, "peft_config", {}).values():
            peft_config.base_model_name_or_path = base_model_id(cfg)
    gap = standard_load_gap(model, cfg)
    with atomic_directory(adapter_dir) as tmp:
        if hasattr(model, "peft_config"):
            # The frozen base embeddings are rebuilt on load (pretrained, or seeded and fingerprinted);
            # "auto" would also ask the hub whether the vocabulary changed.
            model.save_pretrained(str(tmp), save_embedding_layers=False)
            mark_standard_load(tmp, gap)
        else:
            _save_bitfit(model, cfg, tmp, gap)
        tokenizer.save_pretrained(str(tmp))
        info = {"config": cfg.to_dict(), "labels": list(model_labels(model)), GAP_KEY: gap}
        info |= _multi_label_record(model, thresholds)
        if cfg.init == "random":
            info["base_fingerprint"] = base_fingerprint(getattr(model, "get_base_model", lambda: model)(), cfg.method)
        write_json(info, tmp / CONFIG_FILE)
    return adapter_dir


def _multi_label_record(model: Any, thresholds: dict[str, Any] | None) -> dict[str, Any]:

    if not is_multi_label_model(model):
        return {}
    return {"multi_label": True, "thresholds": thresholds} if thresholds else {"multi_label": True}


def _save_bitfit(model: Any, cfg: Config, directory: Path, gap: str) -> None:
    """BitFit (no PEFT method): the trained biases and head in ``adapter_model.safetensors`` under the
    model's own parameter names, and an ``adapter_config.json`` that says what they are."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(Path(directory) / WEIGHTS_FILE))
    # peft_type is the refusal itself: PEFT looks it up first (KeyError naming what loads the directory)
    write_json({"peft_type": refusal(gap), "lora_agnews_method": cfg.method,
                "description": "BitFit (lora_agnews, hand-written: PEFT has no BitFit): encoder biases and the "
                               "head, stored under the transformers model's own parameter names",
                "modules_to_save": list(getattr(model, "lora_agnews_head", ()))},
               Path(directory) / PEFT_CONFIG_FILE)


def _load_bitfit(base: Any, cfg: Config, adapter_dir: Path, precision: str = "fp32") -> Any:
    from safetensors.torch import load_file

    tensors = load_file(str(adapter_dir / WEIGHTS_FILE))
    plan = apply_head(base, cfg.head)
    model = apply_bitfit(quantize_model(base, cfg, precision), plan, cfg)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != trained:
        raise AdapterError(f"{adapter_dir / WEIGHTS_FILE} does not hold this configuration's BitFit parameters "
                           f"({len(tensors)} tensors saved, {len(trained)} expected). Retrain the adapter.")
    model.load_state_dict(tensors, strict=False)
    return model


def check_adapter_dir(adapter_dir: Path) -> None:
    """A clear error for a missing or incomplete adapter directory (before any model is built)."""
    adapter_dir = Path(adapter_dir)
    fix = "Train one with `python -m lora_agnews train --out RUN` and pass --adapter RUN/adapter."
    if not adapter_dir.exists():
        raise AdapterError(f"adapter directory {adapter_dir} does not exist. {fix}")
    if not adapter_dir.is_dir():
        raise AdapterError(f"{adapter_dir} is a file; --adapter needs the adapter directory (RUN/adapter). {fix}")
    if (adapter_dir / "adapter").is_dir() and not (adapter_dir / CONFIG_FILE).is_file():
        raise AdapterError(f"{adapter_dir} is a run directory; pass its adapter: --adapter {adapter_dir / 'adapter'}")
    needed = [CONFIG_FILE, PEFT_CONFIG_FILE, WEIGHTS_FILE]
    missing = [n for n in needed if not (adapter_dir / n).is_file()]
    if missing:
        raise AdapterError(f"{adapter_dir} is not a complete adapter directory (missing {', '.join(missing)}). {fix}")


def load_adapter(adapter_dir: Path, device: str | torch.device = "cpu", expect: Sequence[str] | None = None,
                 expect_multi_label: bool | None = None) -> tuple[Any, Any, Config]:
    """A fresh base model with the saved LoRA weights and head; ``(model, tokenizer, config)``.

    ``expect``: the class names of the task the adapter is about to be used for; other labels are an
    error naming both, before any prediction is made under the wrong names. ``expect_multi_label``: that
    task's kind; a multi-label adapter for a single-label task (or the reverse) is refused the same way.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    adapter_dir = Path(adapter_dir)
    check_adapter_dir(adapter_dir)
    try:
        info = read_json(adapter_dir / CONFIG_FILE)
        cfg = from_dict(info["config"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise AdapterError(f"{adapter_dir / CONFIG_FILE} is unreadable or from another version of lora_agnews "
                           f"({exc}). Retrain the adapter with this version.") from None
    require_quantization(cfg, device)  # a quantized adapter needs bitsandbytes here too: say so before building
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    torch.manual_seed(cfg.seed)
    precision = resolve_precision(cfg, torch.device(device))
    with quiet():
        # The head is rebuilt for the classes the adapter recorded (a local task's directory need not
        # exist where the adapter is used); adapters from before labels were recorded were AG News ones.
        labels = info.get("labels") or list(TASKS[AGNEWS].labels)
        multi_label = bool(info.get("multi_label", False))
        if expect_multi_label is not None:
            check_same_kind(expect_multi_label, multi_label, "the task it is used for", f"the adapter in {adapter_dir}")
        base = load_base(cfg, len(tokenizer), tokenizer.pad_token_id, labels=labels, multi_label=multi_label)
        if expect is not None:
            check_same_labels(expect, model_labels(base), "the task it is used for", f"the adapter in {adapter_dir}")
        if "base_fingerprint" in info and base_fingerprint(base, cfg.method) != info["base_fingerprint"]:
            raise AdapterError(f"the randomly initialised base model rebuilt for {adapter_dir} differs from the one "
                               f"it was trained on (another torch/transformers version?). Retrain it here.")
        if METHODS[cfg.method].peft is None:
            model = _load_bitfit(base, cfg, adapter_dir, precision)
        else:
            apply_head(base, cfg.head)
            quantize_model(base, cfg, precision)  # deterministic: the base the adapter was trained on
            check_saved_head(base, adapter_dir)
            # PiSSA/OLoRA: PEFT reruns the initialisation on the fresh base (SVD / QR, deterministic), which
            # rebuilds the residual base weights the adapter was trained against, then loads the trained factors.
            model = PeftModel.from_pretrained(base, str(adapter_dir), config=trained_peft_config(adapter_dir, cfg))
            check_saved_weights(model, adapter_dir)
    model.to(device).eval()
    return model, tokenizer, cfg


# A PEFT user loads an adapter directory the standard way: ``PeftModel.from_pretrained(
# AutoModelForSequenceClassification.from_pretrained(base, num_labels=K), DIR)``. That puts the architecture's own
# head on the checkpoint's full-precision weights, so it gives this project's predictions only where the adapter
# holds everything the checkpoint lacks and the head is the architecture's. Where it does not, the saved
# ``task_type`` is a sentence naming what loads the directory: PEFT refuses it before any weight is read
# (``ValueError: Invalid task type: '...'``). ``load_adapter`` passes PEFT the configuration the run trained with.
REFUSED = "lora_agnews adapter"  # how a refusing task_type (or BitFit's peft_type) begins
GAP_KEY = "standard_load_gap"  # in lora_agnews_config.json: standard_load_gap at saving ('' where the load works)


def config_gap(cfg: Config) -> str:
    """What in the configuration alone keeps PEFT's standard load from giving the run's predictions ('' if nothing)."""
    method = METHODS[cfg.method]
    if method.peft is None:
        return f"{method.title} is not a PEFT method"
    if cfg.init != "pretrained":
        return "its base was initialised at random, and no checkpoint holds it"
    if cfg.quantize != "none":
        return f"it was trained on a {cfg.quantize}-quantized base"
    if cfg.head not in ("default", "lora-dense"):
        return f"its {cfg.head!r} head is not the architecture's own classification head"
    return ""


def standard_load_gap(model: Any, cfg: Config) -> str:
    """Why PEFT's standard load of the saved ``model`` would not give its predictions; '' where it would."""
    gap = config_gap(cfg)
    if gap:
        return gap
    fresh = getattr(model.get_base_model(), "lora_agnews_fresh", None)
    if fresh is None:
        return "the checkpoint its base came from is not known"
    saved = tuple(next(iter(model.peft_config.values())).modules_to_save or ())
    unsaved = [name for name in fresh if not in_heads(name, saved)]
    if unsaved:  # e.g. lora-dense: the head's dense layer is random and frozen, so only this run's seed has it
        return f"{unsaved[0]} is initialised at random and frozen, so the adapter does not hold it"
    return ""


LOADER = "lora_agnews.core.adapter.load_adapter(DIR) or `python -m lora_agnews predict --adapter DIR`"
EXPORTER = "for transformers.pipeline(), export it: `python -m lora_agnews export --adapter DIR --out OUT`"


def refusal(gap: str, loader: str = LOADER, export: bool = True) -> str:
    """The text PEFT shows when it refuses a directory whose standard load would not give its predictions."""
    return (f"{REFUSED}: PEFT's own load would not reproduce its predictions ({gap}). Load it with {loader}"
            + (f"; {EXPORTER}" if export else ""))


def mark_standard_load(directory: Path, gap: str) -> None:
    """Set the saved ``task_type``: SEQ_CLS where the standard load gives the run's predictions (and
    ``AutoPeftModelForSequenceClassification`` needs it), else the :func:`refusal`."""
    path = Path(directory) / PEFT_CONFIG_FILE
    write_json({**read_json(path), "task_type": refusal(gap) if gap else SEQ_CLS}, path)


def saved_gap(adapter_dir: Path, cfg: Config) -> str:
    """The directory's recorded :data:`GAP_KEY` (from the configuration where none is recorded)."""
    path = Path(adapter_dir) / CONFIG_FILE
    info = read_json(path) if path.is_file() else {}
    return info[GAP_KEY] if GAP_KEY in info else config_gap(cfg)


def trained_peft_config(adapter_dir: Path, cfg: Config) -> Any:
    """The PEFT configuration saved in ``adapter_dir`` with the ``task_type`` the run trained with (the file's may
    be the :func:`refusal`, or SEQ_CLS for the standard load), for ``PeftModel.from_pretrained(config=...)``."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    saved = {**read_json(Path(adapter_dir) / PEFT_CONFIG_FILE), "task_type": METHODS[cfg.method].task_type}
    kind = PEFT_TYPE_TO_CONFIG_MAPPING[saved["peft_type"]]
    return kind.from_peft_type(**kind.check_kwargs(**saved))


def saved_keys(adapter_dir: Path) -> set[str]:
    """The tensor names in an adapter's weights file (read from its header, no tensor loaded)."""
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / WEIGHTS_FILE), "pt") as weights:
        return set(weights.keys())


def check_saved_head(base: Any, adapter_dir: Path) -> None:
    """Refuse a weights file without tensors for a module ``adapter_config.json`` trained in full (the head).

    Checked before PEFT loads: it fails on such a file with a bare KeyError, or keeps the fresh head.
    PEFT's defaults also list modules the architecture lacks (``score`` on RoBERTa): those are skipped.
    """
    present = [name for name, _ in base.named_modules()]
    keys = [f".{k}" for k in saved_keys(adapter_dir)]
    listed = read_json(Path(adapter_dir) / PEFT_CONFIG_FILE).get("modules_to_save") or []
    for module in dict.fromkeys(listed):
        exists = any(name == module or name.endswith(f".{module}") for name in present)
        if exists and not any(f".{module}." in key for key in keys):
            raise _missing_weights(adapter_dir, [module], "module")


def check_saved_weights(model: Any, adapter_dir: Path) -> None:
    """Refuse an adapter whose file lacks any tensor the loaded configuration trains (a LoRA factor, ...).

    PEFT loads such a file without complaint and keeps the fresh model's values for what is missing.
    """
    from peft import get_peft_model_state_dict

    expected = set(get_peft_model_state_dict(model, save_embedding_layers=False))
    missing = sorted(expected - saved_keys(adapter_dir))
    if missing:
        raise _missing_weights(adapter_dir, [n.removeprefix("base_model.model.") for n in missing], "tensor")


def _missing_weights(adapter_dir: Path, names: list[str], kind: str) -> AdapterError:
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return AdapterError(f"{Path(adapter_dir) / WEIGHTS_FILE} lacks the trained weights of {len(names)} {kind}(s) its "
                        f"adapter_config.json names ({shown}); loaded, they would be freshly initialised, not "
                        f"trained. Restore the file from the run, or retrain the adapter.")


def predict_logits_for_texts(model: Any, tokenizer: Any, cfg: Config, texts: Sequence[str],
                             batch_size: int = 64) -> np.ndarray:
    """Logits for raw texts (normalised as the training data was); a bar for long inputs."""
    clean = [normalize_text(str(t)) for t in texts]
    empty = [i for i, t in enumerate(clean) if not t]
    if empty:
        raise ValueError(f"text {empty[0] + 1} is empty after normalisation; give non-empty headlines.")
    ids = tokenize(clean, tokenizer, text_limit(cfg, model.config), cache=False)  # cut as training cut them
    dataset = TokenizedDataset(ids, [0] * len(ids))
    device = next(model.parameters()).device
    return predict_logits(model, dataset, tokenizer.pad_token_id, batch_size, device, "fp32",
                          progress=interactive() and len(ids) > 10 * batch_size)


def predict_texts(model: Any, tokenizer: Any, cfg: Config, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Class probabilities for raw texts, shape ``(len(texts), classes)`` in the order of ``model_labels(model)``.

    Single-label: a softmax (rows sum to 1). Multi-label: each label's own sigmoid probability.
    """
    logits = predict_logits_for_texts(model, tokenizer, cfg, texts, batch_size)
    return sigmoid(logits) if is_multi_label_model(model) else softmax(logits)


def adapter_thresholds(adapter_dir: Path) -> dict[str, Any] | None:
    """The decision thresholds a multi-label adapter's run chose on validation (None: single-label)."""
    info = read_json(Path(adapter_dir) / CONFIG_FILE)
    if not info.get("multi_label"):
        return None
    return info.get("thresholds") or {"global": 0.5, "per_label": [0.5] * len(info["labels"]),
                                      "rule": "no thresholds recorded: 0.5"}


# A multi-label run's scoring, ``predict`` output and export record.
#
# The pure parts live in :mod:`lora_agnews.core.tasks.label_sets` (label sets) and
# :mod:`lora_agnews.core.tasks.multilabel_scores` (thresholds, metrics).

def score(model: Any, dataset: Any, pad_token_id: int, cfg: Any, device: Any, precision: str) -> np.ndarray:
    """Logits of ``model`` on ``dataset`` (the same batched pass as single-label scoring)."""
    return predict_logits(model, dataset, pad_token_id, cfg.eval_batch_size, device, precision,
                          progress=interactive(), multiple=cfg.pad_multiple)


def evaluate_multi_label(prep: Any, model: Any, out_dir: Any, device: Any, precision: str,
                         scoring_model: Callable[[Any, Any], Any]) -> tuple[Any, dict[str, Any], np.ndarray, float]:
    """Choose thresholds on validation, save the adapter with them, score test once with them.

    ``scoring_model``: :func:`lora_agnews.core.score.scoring_model` (passed in: score imports this module).
    Returns the adapter directory, the test metrics, the test logits and the seconds the test pass took.
    """
    cfg, names = prep.cfg, prep.splits.labels
    check_same_labels(names, model_labels(model), "the data", "the model")
    pad = prep.tokenizer.pad_token_id
    # validation through the unmerged model: merging rewrites the base weights, and the adapter is saved after
    val_probs = sigmoid(score(model.to(device), prep.validation, pad, cfg, device, precision))
    thresholds = choose_thresholds(val_probs, np.asarray(prep.validation.labels))
    say(f"thresholds chosen on validation: global {thresholds['global']:.2f}, "
        f"{sum(thresholds['tuned'])} of {len(names)} labels with their own")
    adapter_dir = save_adapter(model, prep.tokenizer, cfg, out_dir / "adapter", thresholds=thresholds)
    eval_model = scoring_model(model, cfg).to(device)
    say(f"scoring the test split ({len(prep.test):,} examples)")
    t0 = time.perf_counter()
    logits = score(eval_model, prep.test, pad, cfg, device, precision)
    seconds = time.perf_counter() - t0
    metrics = compute_metrics(np.asarray(prep.test.labels), sigmoid(logits), thresholds, names=names, seed=cfg.seed)
    return adapter_dir, metrics, logits, seconds


def thresholds_for(adapter_dir: Any, names: Sequence[str], override: float | None = None,
                   record: dict[str, Any] | None = None) -> list[float]:
    """Per-label thresholds ``predict`` applies: ``override`` for every label, else ``record`` (a merged
    task's, from the merge manifest), else the adapter's own record; without any, 0.5."""
    if override is not None:
        return [check_threshold(override, "--threshold")] * len(names)
    if record is not None:
        return list(record["per_label"])
    record = adapter_thresholds(adapter_dir) if (Path(adapter_dir) / CONFIG_FILE).is_file() else None
    return list(record["per_label"]) if record else [0.5] * len(names)


def prediction_rows(texts: Sequence[str], probs: np.ndarray, names: Sequence[str], thresholds: Sequence[float],
                    ) -> list[dict[str, Any]]:
    """Per text: the predicted label set (possibly empty), every label's probability and its threshold."""
    pred = apply_thresholds(probs, thresholds)
    return [{"text": text, "labels": [names[i] for i in np.flatnonzero(row)],
             "label_ids": [int(i) for i in np.flatnonzero(row)],
             "probabilities": {n: float(p) for n, p in zip(names, prob)},
             "thresholds": {n: float(t) for n, t in zip(names, thresholds)}}
            for text, row, prob in zip(texts, pred, probs)]


def print_predictions(texts: Sequence[str], probs: np.ndarray, names: Sequence[str], adapter_dir: Any,
                      override: float | None, as_json: bool, record: dict[str, Any] | None = None) -> None:
    """``predict``'s output for a multi-label adapter: JSON rows, or one tab-separated line per text
    (the label set joined by ``|``, ``-`` when empty; then every label's probability)."""
    rows = prediction_rows(texts, probs, names, thresholds_for(adapter_dir, names, override, record))
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        shown = ", ".join(f"{n}={p:.3f}" for n, p in row["probabilities"].items())
        print(f"{SEPARATOR.join(row['labels']) or '-'}\t{shown}\t{row['text']}")


THRESHOLDS_KEY = "label_thresholds"  # in an exported config.json: label name -> threshold


def record_thresholds(config: Any, adapter_dir: Any) -> None:
    """Put a multi-label adapter's thresholds into the exported transformers config (``config.json``).

    ``problem_type`` already makes ``pipeline`` apply a sigmoid per label; the thresholds say which
    scores count as a predicted label, as ``predict`` does.
    """
    record = adapter_thresholds(adapter_dir)
    if record is None:
        return
    names = [config.id2label[i] for i in range(config.num_labels)]
    setattr(config, THRESHOLDS_KEY, {n: float(t) for n, t in zip(names, record["per_label"])})
