"""The Hugging Face Trainer as a run uses it: seeded, checkpointed, resumable, fast by default.

Speed choices (each a config switch): dynamic padding, length-grouped batches, bf16 autocast where the
hardware has bf16 units (CUDA, AMX/AVX512-BF16 CPUs), TF32 and fused AdamW on CUDA, SDPA attention. The model
is chosen on the validation split only; the test split is the caller's (:mod:`lora_agnews.core.train`).
May import ``paths``, ``methods``, ``tasks``, ``config``, ``dataset``, ``tokens``, the model's modules, ``evaluate``,
``runs``, ``launch`` and ``distill``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer_pt_utils import get_length_grouped_indices

from . import distill, launch, runs
from .config import Config
from .dataset import Splits
from .evaluate import pad_multiple
from .methods import METHODS
from .precision import device_for, resolve_precision
from .tasks.multilabel_scores import best_micro_f1
from .tokens import PadCollator, TokenizedDataset
from .paths import interactive, say


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


def by_length(dataset: TokenizedDataset) -> TokenizedDataset:
    """The same examples in length order: the Trainer's validation batches then pad to similar lengths.

    Validation accuracy does not depend on the order; unsorted, a batch of 128 pads to its longest
    text (about twice the mean on AG News), so every evaluation during training costs twice the work.
    """
    order = np.argsort(dataset.lengths, kind="stable")
    return TokenizedDataset([dataset.input_ids[i] for i in order], [dataset.labels[i] for i in order],
                            {k: v[order] for k, v in dataset.extra.items()})


def steps_per_epoch(cfg: Config, n_train: int) -> int:
    """Optimizer steps of one epoch over ``n_train`` examples, the batch spread over every process."""
    return max(1, math.ceil(n_train / (cfg.batch_size * launch.world())))


def total_steps(cfg: Config, n_train: int) -> int:
    """Optimizer steps of the whole run (AdaLoRA's rank schedule is laid out over them)."""
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(cfg, n_train)))


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
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


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
        loss = distill.loss(outputs.logits, labels, teacher, alpha, temperature, self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss


class RunTensorBoard(TensorBoardCallback):
    """The Trainer's TensorBoard integration, writing to ``log_dir`` and dropping steps a resume repeats.

    TensorBoard's event files go inside the run directory (``runs.TENSORBOARD_DIR``): a stable place, removed
    with the run on --overwrite, and found by ``tensorboard --logdir results/`` with every other run's. A resumed
    run starts again at its last checkpoint's step, so the interrupted attempt's events after that step would
    show twice. ``purge_step`` (checkpoint step + 1; 0 for a fresh start) marks them as discarded, the way
    TensorBoard expects a restarted job to do.
    """

    def __init__(self, log_dir: Path, purge_step: int) -> None:
        super().__init__()
        self.logging_dir = str(log_dir)
        self.purge_step = purge_step

    def _init_summary_writer(self, args: Any) -> None:
        self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=self.purge_step)


def _predictions(eval_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = eval_pred
    return np.asarray(logits[0] if isinstance(logits, tuple) else logits), np.asarray(labels)


def _accuracy(eval_pred: Any) -> dict[str, float]:
    logits, labels = _predictions(eval_pred)
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def _micro_f1(eval_pred: Any) -> dict[str, float]:
    """Model selection for label sets: validation micro-F1 at its best global threshold."""
    return {"micro_f1": best_micro_f1(*_predictions(eval_pred))}


def training_arguments(cfg: Config, out_dir: Path, n_train: int, device: torch.device, precision: str,
                       metric: str = "accuracy") -> TrainingArguments:
    epoch = steps_per_epoch(cfg, n_train)
    eval_steps = max(1, epoch // cfg.evals_per_epoch)
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
        logging_strategy="steps", logging_steps=max(1, epoch // 10), logging_first_step=True,
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


def fit(prep: Prepared, out_dir: Path) -> LoraTrainer:
    """Run the Trainer (resuming from the last checkpoint in ``out_dir`` if there is one)."""
    cfg = prep.cfg
    runs.refuse_training(out_dir, cfg)  # --restore-only: every training run and study model passes here
    device = device_for(cfg)
    precision = resolve_precision(cfg, device)
    multi = prep.splits.task.multi_label
    args = training_arguments(cfg, out_dir, len(prep.train), device, precision, "micro_f1" if multi else "accuracy")
    callbacks = [EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping)] if cfg.early_stopping else []
    callbacks += METHODS[cfg.method].callbacks(prep.model)
    distillation = (cfg.distill_alpha, cfg.distill_temperature) if cfg.distill_logits else None
    trainer = LoraTrainer(
        model=prep.model, args=args, train_dataset=prep.train, eval_dataset=prep.validation,
        data_collator=PadCollator(prep.tokenizer.pad_token_id, multiple=pad_multiple(cfg.pad_multiple, device)),
        processing_class=prep.tokenizer, compute_metrics=_micro_f1 if multi else _accuracy, callbacks=callbacks,
        group_by_length=cfg.group_by_length, distill=distillation)
    # Rank 0 picks the newest complete checkpoint (removing cut-off ones); all ranks resume from it.
    last = launch.on_main(lambda: runs.last_checkpoint(out_dir / runs.CHECKPOINTS))
    if last:
        say(f"resuming from {Path(last).name}")
    if "tensorboard" in trainer.args.report_to:  # a list by now ("all" resolved to the installed integrations)
        trainer.remove_callback(TensorBoardCallback)
        purge = int(Path(last).name.rsplit("-", 1)[-1]) + 1 if last else 0  # checkpoint-<global step>
        trainer.add_callback(RunTensorBoard(out_dir / runs.TENSORBOARD_DIR, purge))
    trainer.train(resume_from_checkpoint=last)
    return trainer
