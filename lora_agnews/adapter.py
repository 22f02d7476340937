"""The trained adapter as an artifact: save, reload in a fresh process, predict, model card.

An adapter directory holds the LoRA weights together with the trained head (PEFT's
``modules_to_save``), the tokenizer, the run's config and a hub-style model card, so it is
usable on its own: ``python -m lora_agnews predict --adapter DIR "headline"``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .artifacts import read_json, write_json, atomic_write_text
from .config import Config, from_dict
from .data import LABELS, TokenizedDataset, normalize_text, tokenize

CONFIG_FILE = "lora_agnews_config.json"


class AdapterError(FileNotFoundError):
    """An adapter directory is missing or incomplete."""


def base_fingerprint(model: Any) -> str:
    """Checksum of a few frozen base weights: catches a rebuilt random base that differs."""
    digest = hashlib.sha1()
    for name, p in list(model.named_parameters())[:4]:
        digest.update(name.encode())
        digest.update(p.detach().float().cpu().numpy().tobytes()[:4096])
    return digest.hexdigest()[:16]


def save_adapter(model: Any, tokenizer: Any, cfg: Config, adapter_dir: Path) -> Path:
    adapter_dir = Path(adapter_dir)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    info = {"config": cfg.to_dict(), "labels": list(LABELS)}
    if cfg.init == "random":
        info["base_fingerprint"] = base_fingerprint(model.get_base_model())
    write_json(info, adapter_dir / CONFIG_FILE)
    return adapter_dir


def load_adapter(adapter_dir: Path, device: str | torch.device = "cpu") -> tuple[Any, Any, Config]:
    """A fresh base model with the saved LoRA weights and head; ``(model, tokenizer, config)``."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from .model import _base_model, _quiet, apply_head

    adapter_dir = Path(adapter_dir)
    needed = [CONFIG_FILE, "adapter_config.json"]
    missing = [n for n in needed if not (adapter_dir / n).is_file()]
    if missing:
        raise AdapterError(f"{adapter_dir} is not an adapter directory (missing {', '.join(missing)}). Train one with "
                           f"`python -m lora_agnews train --out RUN` and pass RUN/adapter.")
    info = read_json(adapter_dir / CONFIG_FILE)
    cfg = from_dict(info["config"])
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    torch.manual_seed(cfg.seed)
    with _quiet():
        base = _base_model(cfg, len(tokenizer), tokenizer.pad_token_id)
        apply_head(base, cfg.head)
        if "base_fingerprint" in info and base_fingerprint(base) != info["base_fingerprint"]:
            raise AdapterError(f"the randomly initialised base model rebuilt for {adapter_dir} differs from the one "
                               f"it was trained on (another torch/transformers version?). Retrain it here.")
        model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.to(device).eval()
    return model, tokenizer, cfg


def predict_texts(model: Any, tokenizer: Any, cfg: Config, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Class probabilities for raw texts (normalised as the training data was)."""
    from .evaluate import predict_logits, softmax

    clean = [normalize_text(t) for t in texts]
    ids = tokenize(clean, tokenizer, cfg.max_length, cache=False)
    dataset = TokenizedDataset(ids, [0] * len(ids))
    device = next(model.parameters()).device
    return softmax(predict_logits(model, dataset, tokenizer.pad_token_id, batch_size, device, "fp32"))


def write_model_card(adapter_dir: Path, cfg: Config, metrics: dict[str, Any]) -> Path:
    """README.md in the Hugging Face model-card format (YAML metadata + text)."""
    acc, f1 = metrics["accuracy"], metrics["macro_f1"]
    dataset = "fancyzhx/ag_news" if cfg.data == "hub" else ("project sample" if cfg.data == "sample" else "AG News CSV")
    card = f"""---
library_name: peft
base_model: {cfg.model_name}
pipeline_tag: text-classification
tags:
- lora
- peft
- text-classification
- ag_news
datasets:
- fancyzhx/ag_news
metrics:
- accuracy
- f1
model-index:
- name: lora-agnews-{cfg.profile}
  results:
  - task:
      type: text-classification
      name: Topic classification
    dataset:
      name: AG News ({dataset})
      type: fancyzhx/ag_news
      split: test
    metrics:
    - type: accuracy
      value: {acc:.4f}
    - type: f1
      name: macro F1
      value: {f1:.4f}
---

# LoRA adapter for AG News topic classification ({cfg.profile} profile)

LoRA (r={cfg.lora_r}, alpha={cfg.lora_alpha}, {cfg.lora_variant}, targets {cfg.lora_targets}) on `{cfg.model_name}`
with the `{cfg.head}` classification head; **{metrics['trainable_params']:,} trainable parameters**, head included
(budget {cfg.budget:,}). Labels: {', '.join(f'{i} {n}' for i, n in enumerate(LABELS))}.

| metric | value |
| --- | --- |
| test accuracy | {acc:.4f} |
| macro F1 | {f1:.4f} |
| test examples | {metrics['n_eval']:,} |
| data | {cfg.data} |

## Use

```bash
python -m lora_agnews predict --adapter {adapter_dir} "Stocks rally as oil prices fall"
```

```python
from lora_agnews.adapter import load_adapter, predict_texts
model, tokenizer, cfg = load_adapter("{adapter_dir}")
probs = predict_texts(model, tokenizer, cfg, ["Stocks rally as oil prices fall"])
```

Trained by the lora-agnews project; the full configuration is in `{CONFIG_FILE}`.
"""
    return atomic_write_text(card, Path(adapter_dir) / "README.md")
