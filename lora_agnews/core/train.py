"""Training with the Hugging Face Trainer: seeded, checkpointed, resumable, fast by default.

Speed choices (each a config switch): dynamic padding, length-grouped batches, bf16 autocast
where the hardware has bf16 units (CUDA, AMX/AVX512-BF16 CPUs), TF32 and fused AdamW on
CUDA, SDPA attention, merged LoRA weights at evaluation, token ids cached on disk.
Model selection uses the validation split only; the test split is scored once at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import runs
from .paths import interactive, quiet_libraries, say, write_json
from .config import Config, check_same_labels, model_labels, require_trackers
from .data import PadCollator, Splits, TokenizedDataset, best_micro_f1, encode, load_splits
from .evaluate import evaluate_model, pad_multiple, predict_logits
from .model import (MergeError, build_model, build_tokenizer, check_budget, check_layout, check_max_length, device_for,
                    merge, model_config, parameter_breakdown, require_quantization, resolve_precision)


@dataclass
class Prepared:
    """Everything training needs, built once (the notebooks show parts of it)."""

    cfg: Config
    splits: Splits
    tokenizer: Any
    train: TokenizedDataset
    validation: TokenizedDataset
    test: TokenizedDataset
    model: Any
    breakdown: dict[str, Any]


def prepare(cfg: Config, splits: Splits | None = None) -> Prepared:
    """Data, tokenizer, model and parameter count; refuses an over-budget config before training."""
    from transformers import set_seed

    check_max_length(cfg, model_config(cfg))  # before the data is read or its tokens cached
    set_seed(cfg.seed)
    splits = splits or load_splits(cfg)
    width = splits.label_width  # label sets become indicator rows
    if width:
        from .data import check_training_config

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


def total_steps(cfg: Config, n_train: int) -> int:
    """Optimizer steps of the whole run (AdaLoRA's rank schedule is laid out over them)."""
    world = max(1, torch.distributed.get_world_size() if torch.distributed.is_initialized() else _env_world())
    return max(1, math.ceil(cfg.epochs * math.ceil(n_train / (cfg.batch_size * world))))


def by_length(dataset: TokenizedDataset) -> TokenizedDataset:
    """The same examples in length order: the Trainer's validation batches then pad to similar lengths.

    Validation accuracy does not depend on the order; unsorted, a batch of 128 pads to its longest
    text (about twice the mean on AG News), so every evaluation during training costs twice the work.
    """
    order = np.argsort(dataset.lengths, kind="stable")
    return TokenizedDataset([dataset.input_ids[i] for i in order], [dataset.labels[i] for i in order],
                            {k: v[order] for k, v in dataset.extra.items()})


def run_facts(cfg: Config, splits: Splits) -> dict[str, Any]:
    """What a reader must know to read this run's numbers: the rows used and whether the encoder was pretrained.

    Recorded in ``run.json`` and ``metrics.json`` so the book's and the report's stamp is derived
    from the run itself, never re-guessed from the configuration.
    """
    return {"pretrained": cfg.init == "pretrained", "data_source": splits.source, **splits.facts()}


def teacher_extra(cfg: Config, splits: Splits) -> dict[str, np.ndarray]:
    from .distill import teacher_logits_for

    return {"teacher_logits": teacher_logits_for(cfg.distill_logits, splits.train["text"].tolist(), splits.labels)}


# --------------------------------------------------------------------------- Trainer
class SeededLengthGroupedSampler(torch.utils.data.Sampler):
    """Length-grouped batches in an order that depends on (seed, epoch) only.

    transformers' LengthGroupedSampler draws from the global torch RNG. A run resumed
    mid-epoch reaches the sampler with a different global RNG state than the uninterrupted
    run, so the resumed epoch would shuffle differently and the skipped batches would not be
    the ones already seen; under DDP every rank must also draw the same order, because
    accelerate shards one batch sequence between ranks. The Trainer (through accelerate)
    calls ``set_epoch`` before every epoch, also on the batch-skipping loader of a resume.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths = list(lengths)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _trainer_class() -> type:
    from transformers import Trainer

    class LoraTrainer(Trainer):
        """Trainer with a length-grouped sampler and an optional distillation loss."""

        def __init__(self, *args: Any, group_by_length: bool = True, distill: tuple[float, float] | None = None,
                     **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._group = group_by_length
            self._distill = distill

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not self._group:
                return super()._get_train_sampler(dataset) if train_dataset is not None else super()._get_train_sampler()
            return SeededLengthGroupedSampler(dataset.lengths,
                                              self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                              seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
            teacher = inputs.pop("teacher_logits", None)
            if teacher is None or self._distill is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
            alpha, temperature = self._distill
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            hard = F.cross_entropy(logits, labels, label_smoothing=self.args.label_smoothing_factor)
            soft = F.kl_div(F.log_softmax(logits / temperature, dim=-1),
                            F.log_softmax(teacher.float() / temperature, dim=-1),
                            log_target=True, reduction="batchmean") * temperature ** 2
            loss = (1.0 - alpha) * hard + alpha * soft
            return (loss, outputs) if return_outputs else loss

    return LoraTrainer


def _adalora_callback() -> Any:
    from transformers import TrainerCallback

    class AdaLoraAllocation(TrainerCallback):
        """AdaLoRA's rank allocation after every optimizer step (gradients still present, as PEFT asks).

        The rank pattern PEFT records is cleared again: with it set, every save would slice the pruned
        ranks out of the state dict and a reload would rescale by the smaller rank. Saved and reloaded
        at the initial rank (pruned singular values are zeros), the adapter predicts exactly as trained.
        """

        def __init__(self, model: Any):
            self.model = model

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tuner = self.model.base_model
            tuner.update_and_allocate(state.global_step)
            for peft_config in self.model.peft_config.values():
                peft_config.rank_pattern = None

    return AdaLoraAllocation


def _accuracy(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}


def _micro_f1(eval_pred: Any) -> dict[str, float]:
    """Model selection for label sets: validation micro-F1 at its best global threshold."""

    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"micro_f1": best_micro_f1(np.asarray(logits), np.asarray(labels))}


def training_arguments(cfg: Config, out_dir: Path, n_train: int, device: torch.device, precision: str,
                       metric: str = "accuracy") -> Any:
    from transformers import TrainingArguments

    world = max(1, torch.distributed.get_world_size() if torch.distributed.is_initialized() else _env_world())
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * world)))
    eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
    cuda = device.type == "cuda"
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,
        lr_scheduler_type=cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
        label_smoothing_factor=cfg.label_smoothing,
        eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=metric, greater_is_better=True,
        logging_strategy="steps", logging_steps=max(1, steps_per_epoch // 10), logging_first_step=True,
        bf16=precision == "bf16", fp16=precision == "fp16", tf32=True if cuda else None,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        torch_compile=cfg.compile,
        seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
        report_to=cfg.report_targets or "none",
        disable_tqdm=not interactive(),
        save_only_model=False,
        ddp_find_unused_parameters=False,
    )


# TensorBoard's event files, inside the run directory: a stable place (the Trainer's default is a
# timestamped folder under checkpoints/), removed with the run on --overwrite, and found by
# `tensorboard --logdir results/` together with every other run's.
TENSORBOARD_DIR = runs.TENSORBOARD_DIR


def _tensorboard_callback(log_dir: Path, purge_step: int) -> Any:
    """The Trainer's TensorBoard integration, writing to ``log_dir`` and dropping steps a resume repeats.

    A resumed run starts again at its last checkpoint's step, so the interrupted attempt's events after
    that step would show twice. ``purge_step`` (checkpoint step + 1; 0 for a fresh start) marks them as
    discarded, the way TensorBoard expects a restarted job to do.
    """
    from transformers.integrations import TensorBoardCallback

    class RunTensorBoard(TensorBoardCallback):
        def __init__(self) -> None:
            super().__init__()
            self.logging_dir = str(log_dir)

        def _init_summary_writer(self, args: Any) -> None:
            self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=purge_step)

    return RunTensorBoard()


def _checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])  # checkpoint-<global step>


def _env_world() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def fit(prep: Prepared, out_dir: Path) -> Any:
    """Run the Trainer (resuming from the last checkpoint in ``out_dir`` if there is one)."""
    from transformers import EarlyStoppingCallback

    cfg = prep.cfg
    runs.refuse_training(out_dir, cfg)  # --restore-only: every training run and study model passes here
    device = device_for(cfg)
    precision = resolve_precision(cfg, device)
    multi = prep.splits.task.multi_label
    args = training_arguments(cfg, out_dir, len(prep.train), device, precision, "micro_f1" if multi else "accuracy")
    callbacks = [EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping)] if cfg.early_stopping else []
    if cfg.method == "adalora":
        callbacks.append(_adalora_callback()(prep.model))
    distill = (cfg.distill_alpha, cfg.distill_temperature) if cfg.distill_logits else None
    trainer = _trainer_class()(
        model=prep.model, args=args, train_dataset=prep.train, eval_dataset=prep.validation,
        data_collator=PadCollator(prep.tokenizer.pad_token_id, multiple=pad_multiple(cfg.pad_multiple, device)),
        processing_class=prep.tokenizer, compute_metrics=_micro_f1 if multi else _accuracy, callbacks=callbacks,
        group_by_length=cfg.group_by_length, distill=distill)
    # Rank 0 picks the newest complete checkpoint (removing cut-off ones); all ranks resume from it.
    last = _on_main(lambda: runs.last_checkpoint(out_dir / runs.CHECKPOINTS))
    if last:
        say(f"resuming from {Path(last).name}")
    if "tensorboard" in trainer.args.report_to:  # a list by now ("all" resolved to the installed integrations)
        from transformers.integrations import TensorBoardCallback

        trainer.remove_callback(TensorBoardCallback)
        purge = _checkpoint_step(last) + 1 if last else 0
        trainer.add_callback(_tensorboard_callback(out_dir / TENSORBOARD_DIR, purge))
    trainer.train(resume_from_checkpoint=last)
    return trainer


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
    _init_distributed(cfg)
    lock = runs.RunLock(out_dir)
    _on_main(lock.acquire)
    try:
        return _train_locked(cfg, out_dir, overwrite, splits, owned)
    finally:
        lock.release()


def _train_locked(cfg: Config, out_dir: Path, overwrite: bool, splits: Splits | None, owned: bool) -> dict[str, Any]:
    state = _on_main(lambda: runs.check(out_dir, cfg, overwrite=overwrite, owned=owned))
    if state == "complete":
        say(f"{out_dir} already holds this complete run; reusing it (pass --overwrite to retrain)")
        return runs.load_complete(out_dir) if _is_main_process() else {}
    if state in ("new", "aside") and _on_main(lambda: _restore(out_dir, cfg, state)):
        return runs.load_complete(out_dir) if _is_main_process() else {}
    prep = prepare(cfg, splits)  # config, data and budget errors surface here, before out_dir is touched
    device = device_for(cfg)
    record = _on_main(lambda: _claim(out_dir, cfg, state, device, run_facts(cfg, prep.splits)))
    if state == "resume":
        say(f"{out_dir} holds an unfinished run of this configuration (attempt {record['attempts']}); resuming it")
    try:
        metrics = _train_and_score(prep, out_dir, device)
    except BaseException as exc:
        if _is_main_process():
            runs.finish(out_dir, record, exc)
        raise
    if _is_main_process():
        runs.finish(out_dir, record)
    return metrics


def _restore(out_dir: Path, cfg: Config, state: str) -> bool:
    """The archived run of ``cfg`` copied into ``out_dir`` instead of training it again (only directories under
    results/<profile>/runs, the pipeline's: a user's ``--out`` is trained as asked); False when there is none."""
    from . import archive

    if archive.restorable(out_dir, cfg) is None:
        return False
    runs.claim(out_dir, state)
    return archive.restore_run(out_dir, cfg)


def _claim(out_dir: Path, cfg: Config, state: str, device: torch.device, facts: dict[str, Any]) -> dict[str, Any]:
    runs.refuse_training(out_dir, cfg)  # as fit does, but before a record is written: a refusal leaves no run behind
    runs.claim(out_dir, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    return runs.start(out_dir, cfg, device, facts)


# --------------------------------------------------------------------------- distributed launches
def _init_distributed(cfg: Config) -> None:
    """Join the process group early under torchrun / accelerate launch (WORLD_SIZE > 1).

    The run directory must be claimed by rank 0 before any rank looks for checkpoints, which
    needs a collective before the Trainer exists; the Trainer's accelerate state then reuses
    this group (gloo on CPU, nccl on CUDA).
    """
    import atexit
    import os

    if runs.world_size() <= 1 or not torch.distributed.is_available() or torch.distributed.is_initialized():
        return
    cuda = device_for(cfg).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    atexit.register(_destroy_distributed)


def _destroy_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _on_main(fn: Any) -> Any:
    """``fn()`` on rank 0 only; its result (or its exception) is shared with every rank."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
            or torch.distributed.get_world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if torch.distributed.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # re-raised on every rank, so no rank waits forever
            box[0] = ("error", exc)
    torch.distributed.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def _is_main_process() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return runs.rank() == 0


def process_peak_rss() -> int | None:
    """The peak resident memory of this process so far, in bytes (Linux and macOS; None elsewhere).

    A run's own figure only when it is the process's only work (``python -m lora_agnews train``, the
    quantization study's runs); in a notebook's kernel it includes whatever ran there before.
    """
    try:
        import resource
        import sys
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def process_rss() -> int | None:
    """The resident memory of this process now, in bytes (Linux; None elsewhere).

    Beside the peak: a quantized base is quantized after its float32 checkpoint is loaded, so the peak
    includes that checkpoint once, while the memory held during training and after it does not.
    """
    import os

    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def scoring_model(model: torch.nn.Module, cfg: Config, quiet: bool = False) -> torch.nn.Module:
    """The model a run's test split is scored with: LoRA merged into the base where ``merge_eval`` allows.

    The audit scores a reloaded adapter through this same function, so a run and its audit compute alike.
    """
    if cfg.merge_eval and cfg.quantize != "none":
        if not quiet:
            say(f"note: scoring on the {cfg.quantize} base as trained (merging would dequantize it; the saved "
                f"adapter rebuilds this quantized base)")
    elif cfg.merge_eval:
        try:
            return merge(model, cfg.method)
        except MergeError as exc:
            if not quiet:
                say(f"note: scoring unmerged ({exc})")
    return model


@dataclass(frozen=True)
class Rescore:
    """A complete run's test split scored again from its saved adapter alone, as the run scored it."""

    cfg: Config
    splits: Splits
    logits: np.ndarray
    labels: np.ndarray
    precision: str


def rescore(run_dir: Path | str, device: str | torch.device = "cpu") -> Rescore:
    """Rebuild the run's model from ``run_dir/adapter`` and score its test rows through ``scoring_model``.

    The one re-scoring path: the audit and the evaluation chapter both call it, so "the saved artifact
    reproduces the run" means the same thing wherever it is stated.
    """
    from .adapter import load_adapter

    dev = torch.device(device)
    model, tokenizer, cfg = load_adapter(Path(run_dir) / "adapter", dev)
    splits = load_splits(cfg)
    test = encode(splits.test, tokenizer, cfg.max_length, num_labels=splits.label_width)
    precision = resolve_precision(cfg, dev)
    model = scoring_model(model, cfg, quiet=True).to(dev).eval()
    logits = predict_logits(model, test, tokenizer.pad_token_id, cfg.eval_batch_size, dev, precision,
                            multiple=cfg.pad_multiple)
    return Rescore(cfg, splits, logits, np.asarray(test.labels), precision)


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
    from .adapter import save_adapter, write_model_card

    check_layout(model)  # a 4-bit base bitsandbytes repacked would score a model the adapter cannot rebuild

    precision = resolve_precision(cfg, device)
    if prep.splits.task.multi_label:  # thresholds from validation, saved with the adapter, then test scored once
        from .adapter import evaluate_multi_label

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

