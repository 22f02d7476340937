"""The two references a merged adapter is measured against: the heads alone, and multi-task learning.

:func:`train_head_only` trains a task's head on the frozen encoder (the floor of what an adapter
adds); :func:`train_multitask` trains one LoRA adapter on all tasks at once with one linear head
per task (what merging tries to reach without training together). Both go through the project's
Trainer path and reuse a complete run of the same configuration.

* **The floor** trains the task's head alone (the same head the adapter trains) on the frozen
  encoder, through the same Trainer path (:func:`lora_agnews.core.trainer.fit`): a LoRA with no targets
  does not exist, and BitFit trains biases too.
* **Multi-task learning** uses one linear head per task on the first token: at roberta-base scale
  three ``default`` heads alone (593,668 parameters each) would exceed the 1,000,000 budget, while
  linear heads cost hidden x classes. Batches mix the tasks (length-grouped over their union); the
  loss is each row's cross-entropy under its own task's head.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..core.archive import roundtrip
from ..core.paths import interactive, read_json, say, write_json
from ..core.config import DERIVED_KEYS, Config, from_dict
from ..core.runs import DATA_KEY, run_key  # a study model is keyed as a run: data content hash included
from ..core.dataset import load_splits
from ..core.tokens import TokenizedDataset, encode
from .merging import MergingError, _device, _head_names, _precision, task_name

TRAINABLE_FILE = "trainable.safetensors"  # the trained tensors (head; LoRA factors + heads): what the audit reloads


# --------------------------------------------------------------------------- the trained tensors, kept and reloaded
def save_trainable(model: nn.Module, path: Path) -> Path:
    """The tensors that trained (``requires_grad``), by parameter name: with the configuration the record keeps,
    they rebuild the model (the frozen base is rebuilt from the same pretrained or seeded weights)."""
    from safetensors.torch import save_file

    save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}, str(path))
    return Path(path)


def load_trainable(model: nn.Module, path: Path) -> nn.Module:
    """Put the tensors :func:`save_trainable` wrote back into a freshly built ``model`` (the same parameter names and
    shapes, every trainable parameter present; anything else is refused, naming the file)."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(saved) != trainable:
        missing, extra = sorted(trainable - set(saved)), sorted(set(saved) - trainable)
        raise MergingError(f"{path}: the saved tensors do not fit the rebuilt model (missing {missing[:5]}, "
                           f"unexpected {extra[:5]}); retrain it with this version of lora_agnews.")
    with torch.no_grad():
        for name, tensor in saved.items():
            if params[name].shape != tensor.shape:
                raise MergingError(f"{path}: {name} is saved as {tuple(tensor.shape)} but the rebuilt model's is "
                                   f"{tuple(params[name].shape)}; retrain it with this version of lora_agnews.")
            params[name].copy_(tensor)
    return model


def record_config(record: dict[str, Any], key: Any) -> Config:
    """The configuration a record trained with: its ``config`` (written since the trained tensors are kept), else
    rebuilt from its run key (which leaves out only what changes no number) and checked to give that key again."""

    if isinstance(record.get("config"), dict):
        return from_dict(record["config"])
    key = {k: v for k, v in key.items() if k != DATA_KEY}  # the data's content hash is no configuration value
    cfg = from_dict({k: v for k, v in key.items() if k not in DERIVED_KEYS})
    if roundtrip(cfg.run_key()) != roundtrip(key):
        raise MergingError("a record's run key does not rebuild its configuration (it was written with another "
                           "version of lora_agnews or of its data); retrain it.")
    return cfg


# --------------------------------------------------------------------------- floor: the head alone
def head_only_model(cfg: Config, tokenizer: Any, labels: Sequence[str], meta: bool = False) -> nn.Module:
    """The frozen encoder with the configuration's head, the head the only trainable part (a plain
    transformers model: the floor of what an adapter adds)."""
    from ..core.encoders import load_base, quiet
    from ..core.heads import apply_head

    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, quiet():
        base = load_base(cfg if not meta else cfg.replace(init="random"), len(tokenizer), tokenizer.pad_token_id,
                           labels=labels)
        plan = apply_head(base, cfg.head)
    trained = _head_names(base, plan.modules_to_save)
    for name, p in base.named_parameters():
        p.requires_grad_(name in trained)
    base.lora_agnews_head = tuple(plan.modules_to_save)  # parameter_breakdown counts these as the head
    return base


def _key_matches(record: Path, key: Any, *files: Path) -> bool:
    if not record.is_file() or not all(f.is_file() for f in files):
        return False
    try:
        return read_json(record).get("key") == roundtrip(key)
    except ValueError:
        return False


def _found(profile: str, record: Path, current: dict[str, Any], *files: Path) -> bool:
    """A complete model of ``current["key"]`` in ``record``'s directory: there already, or restored from the
    profile's archive (its record then takes ``current``: this checkout's key and configuration)."""
    from ..core.restore import restore_study

    key = current["key"]
    if _key_matches(record, key, *files):
        return True
    return restore_study(record.parent, profile, current, record.name) and _key_matches(record, key, *files)


def _train_prepared(cfg: Config, splits: Any, tokenizer: Any, model: nn.Module, train_ds: TokenizedDataset,
                    val_ds: TokenizedDataset, run_dir: Path) -> Any:
    """The project's Trainer path (:func:`lora_agnews.core.trainer.fit`) for a model train.prepare does not build; the
    trained Trainer (its ``model``, and its ``state`` with the optimiser steps taken)."""
    from ..core.budget import parameter_breakdown
    from ..core.trainer import Prepared, by_length, fit

    prep = Prepared(cfg, splits, tokenizer, train_ds, by_length(val_ds), val_ds, model, parameter_breakdown(model))
    return fit(prep, run_dir)


def _clear(run_dir: Path) -> None:
    """An empty ``run_dir`` to train into; an earlier run of another key there is moved aside, never deleted
    (it may have taken an hour, and changing the parameter back should not cost it again)."""
    from ..core.runs import set_aside

    if run_dir.is_dir() and any(run_dir.iterdir()):
        records = [run_dir / name for name in ("head_only.json", "multitask.json") if (run_dir / name).is_file()]
        try:
            key = read_json(records[0]).get("key") if records else None
        except ValueError:
            key = None
        say(f"{run_dir} held a run of another configuration; moved it to {set_aside(run_dir, key)}")
    run_dir.mkdir(parents=True, exist_ok=True)


def head_only_identity(cfg: Config) -> dict[str, Any]:
    """What a head-only floor's record says identifies it (``key``) and how it was configured: reuse, the archive
    and a run computed elsewhere (lora_agnews.engines) compare this."""
    return {"key": {"kind": "head_only", "run_key": run_key(cfg)}, "config": cfg.to_dict()}


def multitask_identity(cfgs: Sequence[Config]) -> dict[str, Any]:
    """The multi-task model's identity (``key``, one run key per task) and configurations, as its record holds them."""
    return {"key": {"kind": "multitask", "run_keys": [run_key(c) for c in cfgs]}, "configs": [c.to_dict() for c in cfgs]}


def train_head_only(cfg: Config, run_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Train the task's head alone on the frozen encoder; ``(test logits, test labels, trainable count)``.

    A complete run of the same configuration in ``run_dir`` is reused (``head_only.json`` records its
    key); the Trainer's checkpoints (whole models, frozen encoder included) are removed afterwards.
    """
    import shutil

    from transformers import set_seed

    from ..core.budget import BudgetError
    from ..core.encoders import build_tokenizer
    from ..core.runs import save_arrays

    run_dir = Path(run_dir)
    current = head_only_identity(cfg)
    key = current["key"]
    record, arrays = run_dir / "head_only.json", run_dir / "test_predictions.npz"
    if _found(cfg.profile, record, current, arrays, run_dir / TRAINABLE_FILE):  # without its tensors: not auditable
        with np.load(arrays) as saved:
            return saved["logits"], saved["labels"], int(read_json(record)["trainable_params"])

    if not interactive():  # the Trainer saves whole models here, each with a "Writing model shards" bar
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    set_seed(cfg.seed)
    splits = load_splits(cfg)
    tokenizer = build_tokenizer(cfg)
    model = head_only_model(cfg, tokenizer, splits.labels)
    params = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    if params > cfg.budget:
        raise BudgetError(f"the head alone trains {params:,} parameters, over the budget of {cfg.budget:,}.")
    _clear(run_dir)
    say(f"head only: {task_name(cfg)} ({params:,} trainable parameters)")
    train_ds = encode(splits.train, tokenizer, cfg.max_length)
    val_ds = encode(splits.validation, tokenizer, cfg.max_length)
    model = _train_prepared(cfg, splits, tokenizer, model, train_ds, val_ds, run_dir).model
    logits = head_only_logits(model, cfg, tokenizer, splits.test, _device(cfg, None))
    labels = splits.test["label"].to_numpy()
    save_trainable(model, run_dir / TRAINABLE_FILE)
    save_arrays(arrays, logits=logits, labels=labels)
    write_json({"key": key, "config": cfg.to_dict(), "trainable_params": params, "task": task_name(cfg),
                "labels": list(splits.labels), "accuracy": float((logits.argmax(1) == labels).mean())}, record)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return logits, labels, params


def head_only_logits(model: nn.Module, cfg: Config, tokenizer: Any, test: Any, device: torch.device) -> np.ndarray:
    """The floor's logits on the test rows ``test`` (a split's frame): how training scored them, and the audit again."""
    from ..core.evaluate import predict_logits

    test_ds = encode(test, tokenizer, cfg.max_length)
    return predict_logits(model.to(device), test_ds, tokenizer.pad_token_id, cfg.eval_batch_size, device,
                          _precision(cfg, device))


def load_head_only(run_dir: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Any, Config]:
    """The head-only floor of ``run_dir`` rebuilt from its record and saved head alone: ``(model, tokenizer, cfg)``."""
    from ..core.encoders import build_tokenizer

    run_dir = Path(run_dir)
    record = read_json(run_dir / "head_only.json")
    cfg = record_config(record, record["key"]["run_key"])
    tokenizer = build_tokenizer(cfg)
    model = load_trainable(head_only_model(cfg, tokenizer, record["labels"]), run_dir / TRAINABLE_FILE)
    return model.to(torch.device(device)).eval(), tokenizer, cfg


# --------------------------------------------------------------------------- multi-task learning
class MultiTaskModel(nn.Module):
    """A LoRA-adapted encoder shared by every task, one linear head per task on the first token.

    ``forward(input_ids, attention_mask, labels, task_id)``: each row goes through its own task's
    head; ``logits`` are as wide as the widest task (other columns -1e4, never argmax), and the loss
    is the mean over rows of each row's cross-entropy under its own head.
    """

    def __init__(self, encoder: nn.Module, heads: nn.ModuleDict, names: Sequence[str], widths: Sequence[int]):
        super().__init__()
        self.encoder = encoder
        self.heads = heads
        self.names = tuple(names)
        self.widths = tuple(int(w) for w in widths)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, task_id: torch.Tensor | None = None) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        if task_id is None:
            raise MergingError("a multi-task model needs each row's task_id (the index of its task).")
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        task_id = task_id.to(hidden.device).long()
        logits = hidden.new_full((hidden.shape[0], max(self.widths)), -1e4, dtype=torch.float32)
        loss = hidden.new_zeros((), dtype=torch.float32)
        for t in task_id.unique().tolist():
            rows = task_id == t
            z = self.heads[str(t)](hidden[rows]).float()
            logits[rows, : z.shape[1]] = z
            if labels is not None:
                loss = loss + nn.functional.cross_entropy(z, labels[rows].to(z.device), reduction="sum")
        return SequenceClassifierOutput(loss=loss / hidden.shape[0] if labels is not None else None, logits=logits)


class OneTask(nn.Module):
    """A view of a :class:`MultiTaskModel` that scores one task (for ``predict_logits``)."""

    def __init__(self, model: MultiTaskModel, task: int):
        super().__init__()
        self.model = model
        self.task = int(task)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        ids = torch.full((input_ids.shape[0],), self.task, dtype=torch.long, device=input_ids.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, task_id=ids).logits
        return SequenceClassifierOutput(logits=logits[:, : self.model.widths[self.task]])


def build_multitask(cfg: Config, labels: Sequence[Sequence[str]], names: Sequence[str], tokenizer: Any,
                    meta: bool = False) -> MultiTaskModel:
    """The shared encoder (``cfg``'s LoRA, no head of its own) and one linear head per task."""
    from peft import get_peft_model

    from ..core.build import check_targets, peft_config
    from ..core.encoders import family, load_base, quiet
    from ..core.heads import FirstTokenLinearHead, HeadPlan

    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, quiet():
        base = load_base(cfg if not meta else cfg.replace(init="random"), len(tokenizer), tokenizer.pad_token_id,
                           labels=labels[0])
        fam = family(base)
        check_targets(base, cfg, fam)
        peft_model = get_peft_model(base, peft_config(cfg, HeadPlan((), ()), base, fam))
        encoder = getattr(peft_model.get_base_model(), base.base_model_prefix)
        config = base.config
        drop = getattr(config, "classifier_dropout", None) or config.hidden_dropout_prob
        heads = nn.ModuleDict({str(i): FirstTokenLinearHead(config.hidden_size, len(names_i), drop)
                               for i, names_i in enumerate(labels)})
    return MultiTaskModel(encoder, heads, names, [len(n) for n in labels])


def trainable_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def check_multitask_budget(cfg: Config, labels: Sequence[Sequence[str]], names: Sequence[str], tokenizer: Any) -> int:
    """The exact trainable count of the multi-task model (shared LoRA + every head), refused over budget."""
    from ..core.budget import BudgetError

    n = trainable_count(build_multitask(cfg, labels, names, tokenizer, meta=True))
    if n > cfg.budget:
        raise BudgetError(f"the multi-task model trains {n:,} parameters (shared LoRA + {len(names)} linear heads), "
                          f"over the budget of {cfg.budget:,}. Lower the rank (merge_lora_r in a profile's study) or drop targets; "
                          f"refused before training.")
    return n


def _concat(datasets: Sequence[TokenizedDataset]) -> TokenizedDataset:
    ids = [x for d in datasets for x in d.input_ids]
    labels = [y for d in datasets for y in d.labels]
    task = np.concatenate([np.full(len(d), i, dtype=np.int64) for i, d in enumerate(datasets)])
    return TokenizedDataset(ids, labels, {"task_id": task})


def train_multitask(cfgs: Sequence[Config], run_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """One LoRA adapter trained on all tasks at once, one head per task: ``(logits per task, labels per task, count)``.

    The training rows of every task are pooled (batches mix tasks, length-grouped), validation is the
    pooled validation rows (accuracy under each row's own head picks the best checkpoint), and each
    task's test rows are scored by its own head. Trains with the first configuration's settings (the
    study's configurations differ only in ``task``). A complete run with the same key is reused.
    """
    import shutil

    from transformers import set_seed

    from ..core.encoders import build_tokenizer
    from ..core.runs import save_arrays

    cfg = cfgs[0]
    run_dir = Path(run_dir)
    current = multitask_identity(cfgs)
    key = current["key"]
    record, arrays = run_dir / "multitask.json", run_dir / "test_predictions.npz"
    if _found(cfg.profile, record, current, arrays, run_dir / TRAINABLE_FILE):
        with np.load(arrays) as saved:
            n = len(cfgs)
            return ([saved[f"logits_{i}"] for i in range(n)], [saved[f"labels_{i}"] for i in range(n)],
                    int(read_json(record)["trainable_params"]))
    set_seed(cfg.seed)
    splits = [load_splits(c) for c in cfgs]
    tokenizer = build_tokenizer(cfg)
    names = [task_name(c) for c in cfgs]
    labels = [s.labels for s in splits]
    params = check_multitask_budget(cfg, labels, names, tokenizer)
    model = build_multitask(cfg, labels, names, tokenizer)
    if trainable_count(model) != params:
        raise MergingError(f"the multi-task model trains {trainable_count(model):,} parameters, its count said "
                           f"{params:,}; please report this.")
    _clear(run_dir)
    say(f"multi-task: {', '.join(names)} ({params:,} trainable parameters, shared LoRA + {len(names)} heads)")
    train_ds = _concat([encode(s.train, tokenizer, cfg.max_length) for s in splits])
    val_ds = _concat([encode(s.validation, tokenizer, cfg.max_length) for s in splits])
    trainer = _train_prepared(cfg, splits[0], tokenizer, model, train_ds, val_ds, run_dir)
    model = trainer.model
    logits = multitask_logits(model, cfgs, [s.test for s in splits], tokenizer, _device(cfg, None))
    ys = [s.test["label"].to_numpy() for s in splits]
    save_trainable(model, run_dir / TRAINABLE_FILE)
    save_arrays(arrays, **{f"logits_{i}": x for i, x in enumerate(logits)}, **{f"labels_{i}": y for i, y in enumerate(ys)})
    write_json({"key": key, "configs": [c.to_dict() for c in cfgs], "trainable_params": params, "tasks": names,
                "labels": [list(x) for x in labels], "global_steps": int(trainer.state.global_step),
                "accuracy": {n: float((x.argmax(1) == y).mean()) for n, x, y in zip(names, logits, ys)}}, record)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return logits, ys, params


def multitask_logits(model: MultiTaskModel, cfgs: Sequence[Config], tests: Sequence[Any], tokenizer: Any,
                     device: torch.device) -> list[np.ndarray]:
    """Each task's test rows (``tests``: the splits' frames) scored by its own head: how training scored them, and the
    audit again."""
    from ..core.evaluate import predict_logits

    model.to(device).eval()
    return [predict_logits(OneTask(model, i), encode(test, tokenizer, c.max_length), tokenizer.pad_token_id,
                           c.eval_batch_size, device, _precision(c, device))
            for i, (c, test) in enumerate(zip(cfgs, tests))]


def load_multitask(run_dir: Path, device: str | torch.device = "cpu") -> tuple[MultiTaskModel, Any, list[Config]]:
    """The multi-task model of ``run_dir`` rebuilt from its record and saved LoRA factors and heads:
    ``(model, tokenizer, one configuration per task)``."""
    from ..core.encoders import build_tokenizer

    run_dir = Path(run_dir)
    record = read_json(run_dir / "multitask.json")
    keys = record["key"]["run_keys"]
    cfgs = ([record_config({"config": c}, k) for c, k in zip(record["configs"], keys)] if record.get("configs")
            else [record_config({}, k) for k in keys])
    tokenizer = build_tokenizer(cfgs[0])
    model = load_trainable(build_multitask(cfgs[0], record["labels"], record["tasks"], tokenizer), run_dir / TRAINABLE_FILE)
    return model.to(torch.device(device)).eval(), tokenizer, cfgs
