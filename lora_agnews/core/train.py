"""A complete run: restore it from the archive of complete runs, or train it, score it and record it.

Before a pipeline-owned run is trained, the committed archive (``archive/<profile>/``) is asked for an entry
with the same identity (:mod:`lora_agnews.core.restore`). Otherwise the data, the tokenizer and the model are
built and checked against the budget, the Trainer (:mod:`lora_agnews.core.trainer`) chooses the model on the
validation split, and the test split is scored once at the end (:mod:`lora_agnews.core.score`).
May import every other core module but ``export``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import set_seed

from . import launch, runs
from .adapter import evaluate_multi_label, save_adapter
from .card import write_model_card
from .budget import check_budget, parameter_breakdown
from .build import build_model, check_max_length
from .config import Config, require_trackers
from .dataset import Splits, load_splits
from .distill import teacher_extra
from .encoders import build_tokenizer, model_config
from .evaluate import evaluate_model
from .precision import device_for, resolve_precision
from .quantize import check_layout, require_quantization
from .tasks.label_sets import check_training_config
from .tasks.registry import check_same_labels, model_labels
from .tokens import encode
from .paths import interactive, quiet_libraries, say, write_json
from .restore import restorable, restore_run
from .score import scoring_model
from .trainer import Prepared, by_length, fit, total_steps

try:
    import resource
except ImportError:  # no getrusage (Windows): the peak memory is not recorded
    resource = None


def prepare(cfg: Config, splits: Splits | None = None) -> Prepared:
    """Data, tokenizer, model and parameter count; refuses an over-budget config before training."""
    check_max_length(cfg, model_config(cfg))  # before the data is read or its tokens cached
    set_seed(cfg.seed)
    splits = splits or load_splits(cfg)
    width = splits.label_width  # label sets become indicator rows
    if width:
        check_training_config(cfg)
    tokenizer = build_tokenizer(cfg, splits.train["text"].tolist())
    extra = teacher_extra(cfg, splits) if cfg.distill_logits else None
    train_ds = encode(splits.train, tokenizer, cfg.max_length, extra, num_labels=width)
    val_ds = by_length(encode(splits.validation, tokenizer, cfg.max_length, num_labels=width))
    test_ds = encode(splits.test, tokenizer, cfg.max_length, num_labels=width)
    model = build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                        total_steps=total_steps(cfg, len(train_ds)))

    check_same_labels(splits.labels, model_labels(model), f"the data ({splits.task.name})", "the model's head")
    breakdown = parameter_breakdown(model)
    check_budget(breakdown, cfg)
    return Prepared(cfg, splits, tokenizer, train_ds, val_ds, test_ds, model, breakdown)


def run_facts(cfg: Config, splits: Splits) -> dict[str, Any]:
    """What a reader must know to read this run's numbers: the rows used and whether the encoder was pretrained.

    Recorded in ``run.json`` and ``metrics.json`` so the book's and the report's stamp is derived
    from the run itself, never re-guessed from the configuration.
    """
    return {"pretrained": cfg.init == "pretrained", "data_source": splits.source, **splits.facts()}


def train_owned(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Train into a run directory the pipeline names itself (``results/<profile>/runs/...``).

    There a complete run of this configuration is reused, and a run of another configuration
    (a changed parameter, edited data, or text prepared by an older ``DATA_FORMAT``) is moved aside
    to :func:`lora_agnews.core.paths.superseded_dir` instead of refused: the user did not choose the
    directory, and the old run may hold hours of training. A live run is still never touched.
    ``--out`` directories that a user names go through :func:`train`, which refuses unless told to overwrite.
    """
    return train(cfg, run_dir, owned=True)


def train(cfg: Config, out_dir: Path, overwrite: bool = False, splits: Splits | None = None,
          owned: bool = False) -> dict[str, Any]:
    """Train, save the adapter, score the test split once, write ``metrics.json``; return the metrics.

    Rerunning with the same ``out_dir`` reuses a complete run and resumes an interrupted one.
    Nothing in ``out_dir`` is touched until the config, the data and the budget were checked,
    so a refused call never costs an earlier run. The directory is locked (:class:`runs.RunLock`)
    before anything is checked, so a second process training into it is refused at once. Under
    torchrun / accelerate launch only rank 0 holds the lock and writes the record, the adapter and
    the metrics; other ranks return ``{}``.
    """
    quiet_libraries()
    require_trackers(cfg)  # a report_to integration that is not installed: refused before out_dir is touched
    require_quantization(cfg, device_for(cfg))  # quantize without a working bitsandbytes, or a method that cannot: refused here
    out_dir = Path(out_dir).resolve()
    launch.init_distributed(device_for(cfg))
    lock = runs.RunLock(out_dir)
    launch.on_main(lock.acquire)
    try:
        return _train_locked(cfg, out_dir, overwrite, splits, owned)
    finally:
        lock.release()


def _train_locked(cfg: Config, out_dir: Path, overwrite: bool, splits: Splits | None, owned: bool) -> dict[str, Any]:
    state = launch.on_main(lambda: runs.check(out_dir, cfg, overwrite=overwrite, owned=owned))
    if state == "complete":
        say(f"{out_dir} already holds this complete run; reusing it (pass --overwrite to retrain)")
        return runs.load_complete(out_dir) if launch.is_main_process() else {}
    if state in ("new", "aside") and launch.on_main(lambda: _restore(out_dir, cfg, state)):
        return runs.load_complete(out_dir) if launch.is_main_process() else {}
    prep = prepare(cfg, splits)  # config, data and budget errors surface here, before out_dir is touched
    device = device_for(cfg)
    record = launch.on_main(lambda: _claim(out_dir, cfg, state, device, run_facts(cfg, prep.splits)))
    if state == "resume":
        say(f"{out_dir} holds an unfinished run of this configuration (attempt {record['attempts']}); resuming it")
    try:
        metrics = _train_and_score(prep, out_dir, device)
    except BaseException as exc:
        if launch.is_main_process():
            runs.finish(out_dir, record, exc)
        raise
    if launch.is_main_process():
        runs.finish(out_dir, record)
    return metrics


def _restore(out_dir: Path, cfg: Config, state: str) -> bool:
    """The archived run of ``cfg`` copied into ``out_dir`` instead of training it again (only directories under
    results/<profile>/runs, the pipeline's: a user's ``--out`` is trained as asked); False when there is none."""
    if restorable(out_dir, cfg) is None:
        return False
    runs.claim(out_dir, state)
    return restore_run(out_dir, cfg)


def _claim(out_dir: Path, cfg: Config, state: str, device: torch.device, facts: dict[str, Any]) -> dict[str, Any]:
    runs.refuse_training(out_dir, cfg)  # as fit does, but before a record is written: a refusal leaves no run behind
    runs.claim(out_dir, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    return runs.start(out_dir, cfg, device, facts)


def process_peak_rss() -> int | None:
    """The peak resident memory of this process so far, in bytes (Linux and macOS; None elsewhere).

    A run's own figure only when it is the process's only work (``python -m lora_agnews train``, the
    quantization study's runs); in a notebook's kernel it includes whatever ran there before.
    """
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def process_rss() -> int | None:
    """The resident memory of this process now, in bytes (Linux; None elsewhere).

    Beside the peak: a quantized base is quantized after its float32 checkpoint is loaded, so the peak
    includes that checkpoint once, while the memory held during training and after it does not.
    """
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _train_and_score(prep: Prepared, out_dir: Path, device: torch.device) -> dict[str, Any]:
    cfg = prep.cfg
    say(f"training {cfg.model_name} ({prep.breakdown['total']:,} trainable parameters) on "
        f"{len(prep.train):,} examples, {cfg.epochs:g} epoch(s), device {device.type}")
    start = time.perf_counter()
    trainer = fit(prep, out_dir)
    train_seconds = time.perf_counter() - start
    if not trainer.is_world_process_zero():
        return {}
    model = trainer.model
    check_layout(model)  # a 4-bit base bitsandbytes repacked would score a model the adapter cannot rebuild

    precision = resolve_precision(cfg, device)
    if prep.splits.task.multi_label:  # thresholds from validation, saved with the adapter, then test scored once
        adapter_dir, metrics, logits, eval_seconds = evaluate_multi_label(prep, model, out_dir, device, precision,
                                                                          scoring_model)
    else:
        adapter_dir = save_adapter(model, prep.tokenizer, cfg, out_dir / "adapter")
        eval_model = scoring_model(model, cfg).to(device)
        say(f"scoring the test split ({len(prep.test):,} examples)")
        t0 = time.perf_counter()
        metrics, logits = evaluate_model(eval_model, prep.test, prep.tokenizer.pad_token_id, cfg.eval_batch_size,
                                         device, precision, progress=interactive(), multiple=cfg.pad_multiple,
                                         names=prep.splits.labels)
        eval_seconds = time.perf_counter() - t0
    history = trainer.state.log_history
    best_val = trainer.state.best_metric
    best_key = "best_validation_micro_f1" if prep.splits.task.multi_label else "best_validation_accuracy"
    metrics.update({
        "trainable_params": prep.breakdown["total"], "parameter_breakdown": prep.breakdown,
        "config": cfg.to_dict(), "split_sizes": prep.splits.sizes(), **run_facts(cfg, prep.splits),
        "best_validation_accuracy": None, best_key: float(best_val) if best_val is not None else None,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "train_seconds": train_seconds, "eval_seconds": eval_seconds, "precision": precision,
        "device": runs.device_description(device), "global_steps": trainer.state.global_step,
        "adapter_dir": adapter_dir.name,
        # validation passes inside training, reported apart from the optimisation itself
        "validation_seconds": float(sum(h.get("eval_runtime", 0.0) for h in history)),
    })
    if device.type == "cuda":
        metrics["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    metrics["process_peak_rss_bytes"] = process_peak_rss()
    metrics["process_rss_bytes"] = process_rss()  # now, after training and scoring: the steady state
    runs.save_arrays(out_dir / "test_predictions.npz", logits=logits, labels=np.asarray(prep.test.labels))
    write_json(history, out_dir / "history.json")
    write_json(metrics, out_dir / runs.METRICS_FILE)
    write_model_card(adapter_dir, cfg, metrics)
    if prep.splits.task.multi_label:
        say(f"test micro F1 {metrics['micro_f1']:.4f} (macro F1 {metrics['macro_f1']:.4f}, subset accuracy "
            f"{metrics['subset_accuracy']:.4f}) -> {out_dir / runs.METRICS_FILE}")
    else:
        say(f"test accuracy {metrics['accuracy']:.4f} (macro F1 {metrics['macro_f1']:.4f}) -> {out_dir / runs.METRICS_FILE}")
    return metrics
