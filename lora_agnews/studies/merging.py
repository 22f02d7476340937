"""Multi-task LoRA merging: tasks' LoRA factors merged with PEFT, each task scored by its own head.

:func:`score_merged` scores every task's test rows with ITS OWN trained head on each merged adapter
(and on its own adapter, through the same path); :func:`merge_adapters` writes one merged adapter
directory for all tasks, which :func:`load_merged` (and ``predict --task``) read. The study that
trains the adapters and frames the scores lives in :mod:`lora_agnews.studies.merging_study`; the floor (heads alone)
and the multi-task model in :mod:`lora_agnews.studies.multitask`.

Choices, and why:

* **One tokenizer.** Merged LoRA factors act on one embedding table, so every task must read text
  through the same vocabulary. A pretrained tokenizer already is one; ``tokenizer local`` (the
  smoke profile) would build a different word-level vocabulary per task, so the study builds ONE
  word-level tokenizer from the union of the tasks' whole training files, saves it as
  ``OUT/tokenizer-<hash>`` and points every task's ``tokenizer`` at it (the hash of its vocabulary
  is in the path, so a changed vocabulary is a changed configuration, never a reused run).
* **Heads apart from the LoRA factors.** Heads differ in width between tasks, so they cannot share
  one PEFT ``ModulesToSaveWrapper``, and PEFT refuses to merge adapters that each carry one. The
  LoRA factors are loaded from LoRA-only copies (the safetensors without the head's keys, the
  config without ``modules_to_save``); task t's trained head is put into the base model's own head
  before the adapters are loaded. The merged adapter is identical for every task (DARE's random
  masks are drawn after one fixed seed), only the head changes.
* **Plain LoRA only.** PiSSA / OLoRA adapters are trained against residual base weights of their
  own, DoRA's magnitudes and rsLoRA's scaling are not what ``add_weighted_adapter`` combines (it
  gives the merged adapter ``alpha = r``, i.e. scaling 1 only without rsLoRA), other methods have
  no LoRA factors, and ``lora-dense`` would merge the heads' own dense layers: all refused by name.
What the combination types do (PEFT 0.21): ``cat`` stacks the factors, so the merged update is
exactly sum_i w_i * scaling_i * B_i A_i (rank = the sum of the ranks: more parameters); ``svd`` and
the ``*_svd`` types form that exact sum (pruned first for ties/dare/magnitude) and keep its best
rank-r approximation (r = ``svd_rank``, default the largest input rank); ``linear``, ``ties``,
``dare_linear``, ``dare_ties`` and ``magnitude_prune`` combine the A and the B factors separately
(each scaled by sqrt(w_i * scaling_i)), which needs equal ranks and brings in cross terms B_i A_j.
The pruning types need ``density`` in (0, 1]; DARE's masks are random (seeded by ``seed``).
``weights`` default to 1.0 per adapter (task arithmetic with lambda 1).

On a tiny randomly initialised encoder (tests) all numbers prove the machinery, not merging.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..core.paths import read_json, say, write_json
from ..core.config import Config, ConfigError, from_dict
from ..core.methods import METHODS
from ..core.tasks.registry import AGNEWS, TASKS
from ..core.dataset import load_splits
from ..core.tasks.multilabel_scores import apply_thresholds, sigmoid
from ..core.tokens import TokenizedDataset, encode

# PEFT's combination types (peft/tuners/lora/model.py, LoraModel.add_weighted_adapter).
COMBINATIONS: tuple[str, ...] = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SVD_VARIANTS: tuple[str, ...] = ("ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
ALL_COMBINATIONS: tuple[str, ...] = COMBINATIONS + SVD_VARIANTS
EQUAL_RANKS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")  # PEFT's own rank check
NEEDS_DENSITY = ("ties", "dare_linear", "dare_ties", "magnitude_prune", *SVD_VARIANTS)
DEFAULT_DENSITY = 0.5
DEFAULT_SEED = 0  # DARE's random masks: one draw, the same for every task's scoring and for merge_adapters

MANIFEST_FILE = "lora_agnews_merge.json"
MERGED_LOADER = ("lora_agnews.studies.merging.load_merged(DIR, TASK) or "
                 "`python -m lora_agnews predict --adapter DIR --task TASK`")
MANIFEST_FORMAT = 1
TASK_PREFIX = "task"  # PEFT adapter names of the tasks' LoRA factors: task0, task1, ...
MERGED = "merged"
BASE_PREFIX = "base_model.model."  # PEFT's prefix of saved keys


class MergingError(ValueError):
    """Adapters or settings that cannot be merged; the message names the problem and the fix."""


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Combination:
    """One way to merge: PEFT's ``combination_type``, per-adapter ``weights`` (None: 1.0 each, plain task
    arithmetic), ``density`` (types that prune), ``svd_rank`` (SVD types; None: the largest input rank)
    and the ``seed`` drawn before DARE's random masks."""

    kind: str
    weights: tuple[float, ...] | None = None
    density: float | None = None
    svd_rank: int | None = None
    seed: int = DEFAULT_SEED

    @property
    def label(self) -> str:
        """A short readable name (``ties d=0.5``), also the row name in the results."""
        parts = [self.kind]
        if self.density is not None:
            parts.append(f"d={self.density:g}")
        if self.weights is not None:
            parts.append("w=" + ",".join(f"{w:g}" for w in self.weights))
        if self.svd_rank is not None:
            parts.append(f"r={self.svd_rank}")
        return " ".join(parts)

    def weights_for(self, n: int) -> list[float]:
        return [1.0] * n if self.weights is None else [float(w) for w in self.weights]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "weights": None if self.weights is None else list(self.weights),
                "density": self.density, "svd_rank": self.svd_rank, "seed": self.seed, "label": self.label}


def make_combination(kind: str, weights: Sequence[float] | None = None, density: float | None = None,
                svd_rank: int | None = None, seed: int = DEFAULT_SEED) -> Combination:
    """A checked :class:`Combination` (the kind, the density's range, finite weights)."""
    if kind not in ALL_COMBINATIONS:
        raise MergingError(f"unknown combination type {kind!r}; choose from {', '.join(ALL_COMBINATIONS)}.")
    if kind in NEEDS_DENSITY:
        if density is None:
            raise MergingError(f"combination {kind!r} prunes the LoRA factors and needs a density in (0, 1] "
                               f"(the share of values kept), e.g. density {DEFAULT_DENSITY}.")
        if not 0.0 < float(density) <= 1.0:
            raise MergingError(f"density {density} is outside (0, 1]: it is the share of values {kind!r} keeps; "
                               f"use e.g. {DEFAULT_DENSITY}.")
    elif density is not None:
        raise MergingError(f"combination {kind!r} does not prune, so a density means nothing to it; leave it out "
                           f"or use one of {', '.join(NEEDS_DENSITY)}.")
    if svd_rank is not None and (not kind.endswith("svd") or svd_rank <= 0):
        raise MergingError(f"svd_rank {svd_rank} applies to the SVD combinations only and must be positive; "
                           f"leave it out for {kind!r}.")
    if weights is not None:
        weights = tuple(float(w) for w in weights)
        if not weights or not all(math.isfinite(w) for w in weights):
            raise MergingError(f"weights {list(weights)} must be one finite number per adapter.")
    return Combination(kind, weights, None if density is None else float(density), svd_rank, int(seed))


def default_combinations(density: float = DEFAULT_DENSITY, weights: Sequence[float] | None = None,
                         kinds: Sequence[str] = COMBINATIONS, seed: int = DEFAULT_SEED) -> list[Combination]:
    """Each of ``kinds`` with ``weights``, and ``density`` where the kind prunes."""
    return [make_combination(k, weights, density if k in NEEDS_DENSITY else None, seed=seed) for k in kinds]


# --------------------------------------------------------------------------- saved adapters
@dataclass
class SavedAdapter:
    """One task's trained adapter as merging reads it: its config, labels, LoRA settings and tensors."""

    directory: Path
    cfg: Config
    labels: tuple[str, ...]
    info: dict[str, Any]
    peft_config: dict[str, Any]

    @property
    def name(self) -> str:
        return task_name(self.cfg)

    @property
    def multi_label(self) -> bool:
        return bool(self.info.get("multi_label", False))

    @property
    def rank(self) -> int:
        pattern = self.peft_config.get("rank_pattern") or {}
        return max([int(self.peft_config["r"]), *map(int, pattern.values())])

    def tensors(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        from ..core.adapter import WEIGHTS_FILE

        return load_file(str(self.directory / WEIGHTS_FILE))

    def lora_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.tensors().items() if _is_lora_key(k)}

    def head_tensors(self) -> dict[str, torch.Tensor]:
        """The trained head under the base model's own parameter names (``classifier.dense.weight``...)."""
        return {k.removeprefix(BASE_PREFIX): v for k, v in self.tensors().items() if not _is_lora_key(k)}


def _is_lora_key(key: str) -> bool:
    return ".lora_" in key


def task_name(cfg: Config) -> str:
    """The task's name as its loader gives it (a registered name, or a task directory's own name)."""
    if cfg.task in TASKS:
        return cfg.task
    path = Path(cfg.task).expanduser()
    return path.name or str(path)


def read_adapter(directory: Path) -> SavedAdapter:
    """A saved adapter directory (``RUN/adapter``), checked complete and readable."""
    from ..core.adapter import CONFIG_FILE, PEFT_CONFIG_FILE, AdapterError, check_adapter_dir

    directory = Path(directory)
    check_adapter_dir(directory)
    try:
        info = read_json(directory / CONFIG_FILE)
        cfg = from_dict(info["config"])
        # the task_type the run trained with (the file's is for PEFT's standard load: adapter.mark_standard_load)
        peft_config = {**read_json(directory / PEFT_CONFIG_FILE), "task_type": METHODS[cfg.method].task_type}
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise AdapterError(f"{directory} holds an unreadable or older adapter ({exc}); retrain it with this "
                           f"version of lora_agnews.") from None
    return SavedAdapter(directory, cfg, tuple(info.get("labels") or TASKS[AGNEWS].labels), info, peft_config)


def _tokenizer_digest(tokenizer: Any) -> str:
    return hashlib.sha1(repr(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:12]


def check_mergeable(adapters: Sequence[SavedAdapter]) -> None:
    """Refuse, before anything is built or written, adapters that cannot be merged into one.

    Every adapter must be plain LoRA on the same base (model_name, init, tokenizer; a random base also
    the same seed and base fingerprint), with its head outside the LoRA, and the tasks' names distinct.
    """
    from transformers import AutoTokenizer

    if len(adapters) < 2:
        raise MergingError(f"merging needs at least 2 adapters (one per task); got {len(adapters)}.")
    for a in adapters:
        _check_method(a.cfg, str(a.directory))
        if a.peft_config.get("peft_type") != "LORA":
            raise MergingError(f"{a.directory} is not a PEFT LoRA adapter (peft_type "
                               f"{a.peft_config.get('peft_type')!r}); only LoRA factors can be merged.")
    _check_names([a.name for a in adapters], [str(a.directory) for a in adapters])
    first = adapters[0]
    digest = _tokenizer_digest(AutoTokenizer.from_pretrained(str(first.directory)))
    for a in adapters[1:]:
        for key in _base_keys(first.cfg):
            if getattr(a.cfg, key) != getattr(first.cfg, key):
                raise MergingError(f"{a.directory} was trained on another base than {first.directory}: {key} "
                                   f"{getattr(a.cfg, key)!r} vs {getattr(first.cfg, key)!r}. Merge adapters of one "
                                   f"frozen encoder (same model_name, init, tokenizer; seed for a random base).")
        if a.info.get("base_fingerprint") != first.info.get("base_fingerprint"):
            raise MergingError(f"{a.directory} and {first.directory} were trained on different randomly initialised "
                               f"base weights (their base fingerprints differ); retrain them with the same seed.")
        if _tokenizer_digest(AutoTokenizer.from_pretrained(str(a.directory))) != digest:
            raise MergingError(f"{a.directory} and {first.directory} use different tokenizers (different "
                               f"vocabularies), so their LoRA updates act on different embedding rows. Train every "
                               f"task with one tokenizer (run_study builds a shared one for tokenizer local).")


def _base_keys(cfg: Config) -> tuple[str, ...]:
    return ("model_name", "init", "seed") if cfg.init == "random" else ("model_name", "init")


def _check_method(cfg: Config, where: str) -> None:
    why = METHODS[cfg.method].not_combinable
    if why:
        raise MergingError(f"{where}: method {cfg.method!r} cannot be merged: {why}. Train every task with "
                           f"-p method lora.")
    if cfg.lora_variant != "lora":
        why = {"dora": "DoRA's magnitude vectors are not combined by add_weighted_adapter",
               "rslora": "add_weighted_adapter gives the merged adapter alpha = r, which rsLoRA scales by sqrt(r), "
                         "not 1"}[cfg.lora_variant]
        raise MergingError(f"{where}: lora_variant {cfg.lora_variant!r} cannot be merged ({why}). Use -p lora_variant lora.")
    if cfg.head == "lora-dense":
        raise MergingError(f"{where}: head 'lora-dense' adapts the head's dense layer with LoRA, which would be merged "
                           f"across tasks; use -p head default or -p head linear.")


def _check_names(names: Sequence[str], where: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for name, place in zip(names, where):
        if name in seen:
            raise MergingError(f"two tasks are both called {name!r} ({seen[name]} and {place}); each task needs its "
                               f"own name to be scored by its own head. Rename one task directory.")
        seen[name] = place


def _check_ranks(adapters: Sequence[SavedAdapter], combo: Combination) -> None:
    ranks = [a.rank for a in adapters]
    if combo.kind in EQUAL_RANKS and len(set(ranks)) > 1:
        raise MergingError(f"combination {combo.kind!r} needs adapters of one rank; got ranks {ranks}. Use cat or "
                           f"svd (any ranks), or train every task with the same lora_r.")
    if combo.weights is not None and len(combo.weights) != len(adapters):
        raise MergingError(f"{len(combo.weights)} weight(s) for {len(adapters)} adapters; give one weight per adapter.")


# --------------------------------------------------------------------------- building merged models
@contextlib.contextmanager
def lora_only_copies(adapters: Sequence[SavedAdapter]) -> Iterator[list[Path]]:
    """Temporary LoRA-only copies of ``adapters``: the safetensors without the head's keys and the config
    without ``modules_to_save``, so PEFT loads the factors alone (heads of other widths stay out)."""
    from safetensors.torch import save_file

    from ..core.adapter import WEIGHTS_FILE

    with tempfile.TemporaryDirectory(prefix="lora_agnews-merge-") as tmp:
        copies = []
        for i, a in enumerate(adapters):
            directory = Path(tmp) / f"{TASK_PREFIX}{i}"
            directory.mkdir()
            save_file({k: v.contiguous() for k, v in a.lora_tensors().items()}, str(directory / WEIGHTS_FILE))
            write_json({**a.peft_config, "modules_to_save": None, "inference_mode": True},
                       directory / "adapter_config.json")
            copies.append(directory)
        yield copies


def _head_names(base: nn.Module, modules: Sequence[str]) -> set[str]:
    return {n for n, _ in base.named_parameters() if any(n.startswith(m + ".") for m in modules)}


def _load_head(base: nn.Module, modules: Sequence[str], head: dict[str, torch.Tensor], where: str) -> None:
    """Put a task's trained head into the base model's own head, refusing a head of another shape or layout."""
    from ..core.adapter import AdapterError

    expected = _head_names(base, modules)
    if set(head) != expected:
        raise AdapterError(f"{where}: the saved head holds {sorted(head)}, but this base's head has {sorted(expected)}. "
                           f"Retrain the adapter with this version of lora_agnews.")
    try:
        base.load_state_dict(head, strict=False)
    except RuntimeError as exc:
        raise AdapterError(f"{where}: the saved head does not fit the base model ({str(exc)[:300]}).") from None


def _task_base(cfg: Config, labels: Sequence[str], tokenizer: Any, head: dict[str, torch.Tensor],
               fingerprint: str | None, where: str, multi_label: bool = False) -> nn.Module:
    """The frozen encoder rebuilt for one task (its labels, its kind, its head type) with its trained head in place."""
    from ..core.adapter import AdapterError, base_fingerprint
    from ..core.encoders import load_base, quiet
    from ..core.heads import apply_head

    torch.manual_seed(cfg.seed)
    with quiet():
        base = load_base(cfg, len(tokenizer), tokenizer.pad_token_id, labels=labels, multi_label=multi_label)
    if fingerprint is not None and base_fingerprint(base, cfg.method) != fingerprint:
        raise AdapterError(f"the randomly initialised base rebuilt for {where} differs from the one it was trained on "
                           f"(another torch/transformers version?). Retrain it here.")
    plan = apply_head(base, cfg.head)
    _load_head(base, plan.modules_to_save, head, where)
    return base


def _with_adapters(base: nn.Module, lora_dirs: Sequence[Path]) -> Any:
    """``base`` with every task's LoRA factors loaded as adapters task0, task1, ... (none active but task0)."""
    from peft import PeftModel

    from ..core.encoders import quiet

    with quiet():
        model = PeftModel.from_pretrained(base, str(lora_dirs[0]), adapter_name=f"{TASK_PREFIX}0")
        for i, directory in enumerate(lora_dirs[1:], start=1):
            model.load_adapter(str(directory), adapter_name=f"{TASK_PREFIX}{i}")
    return model.eval()


def add_merged(model: Any, n_tasks: int, combo: Combination, name: str = MERGED) -> str:
    """Merge adapters task0..task{n-1} of ``model`` into adapter ``name`` (PEFT) and make it the active one.

    ``svd_full_matrices=False``: only the first r singular vectors are kept, and the full SVD of a
    word-embedding update (hidden x vocabulary) would need a vocabulary-squared matrix.
    """
    torch.manual_seed(combo.seed)  # DARE's masks: the same draw whichever task's head is on the model
    model.add_weighted_adapter([f"{TASK_PREFIX}{i}" for i in range(n_tasks)], combo.weights_for(n_tasks), name,
                               combination_type=combo.kind, svd_rank=combo.svd_rank, svd_full_matrices=False,
                               density=combo.density)
    model.set_adapter(name, inference_mode=True)
    return name


def adapter_params(model: Any, name: str) -> int:
    """Exact parameter count of one PEFT adapter of ``model`` (its LoRA factors)."""
    from peft.utils import get_peft_model_state_dict

    return int(sum(v.numel() for v in get_peft_model_state_dict(model, adapter_name=name,
                                                                save_embedding_layers=False).values()))


def _count(tensors: dict[str, torch.Tensor]) -> int:
    return int(sum(v.numel() for v in tensors.values()))


def _precision(cfg: Config, device: torch.device) -> str:
    from ..core.precision import resolve_precision

    return resolve_precision(cfg, device)


def _device(cfg: Config, device: str | torch.device | None) -> torch.device:
    from ..core.precision import device_for

    return torch.device(device) if device is not None else device_for(cfg)


def task_test_rows(cfg: Config, tokenizer: Any, rows: np.ndarray | None = None) -> tuple[TokenizedDataset, np.ndarray]:
    """The task's test rows (the same subset every run of the configuration is scored on; ``rows``: positions of a
    sample of them, the audit's on a restore), encoded, and their labels: class ids, or for a multi-label task the
    indicator matrix its run saved."""
    splits = load_splits(cfg)
    test = splits.test if rows is None else splits.test.iloc[np.asarray(rows)]
    dataset = encode(test, tokenizer, cfg.max_length, num_labels=splits.label_width)
    return dataset, np.asarray(dataset.labels) if splits.label_width else test["label"].to_numpy()


# --------------------------------------------------------------------------- scores
@dataclass
class TaskScores:
    """One task's test rows scored every way: ``logits[method]`` and the trainable count behind each.

    A multi-label task (``y`` an indicator matrix) carries the ``thresholds`` its own run chose on validation:
    every method is scored by its label sets at those thresholds, with the task's own metrics.
    """

    name: str
    labels: tuple[str, ...]
    y: np.ndarray
    logits: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    params: dict[str, int] = dataclasses.field(default_factory=dict)
    kinds: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # method -> combination settings
    # a multi-label task's record (lora_agnews.core.tasks.multilabel_scores.choose_thresholds)
    thresholds: dict[str, Any] | None = None

    @property
    def multi_label(self) -> bool:
        return np.ndim(self.y) == 2

    def correct(self, method: str) -> np.ndarray:
        """Per test row, whether ``method`` got it right: the class, or for label sets the whole set (subset
        accuracy's outcome, the one a paired comparison of rows can use)."""
        logits = self.logits[method]
        if not self.multi_label:
            return logits.argmax(1) == self.y

        return (apply_thresholds(sigmoid(logits), self.decision_thresholds()) == (self.y > 0)).all(1)

    def metrics(self, method: str) -> dict[str, Any]:
        """``method``'s test metrics by the task's own kind: accuracy, macro F1 and the rest for a single-label task;
        micro/macro/samples F1, subset accuracy and Hamming loss at the task's thresholds for a multi-label one."""
        logits = self.logits[method]
        if self.multi_label:
            from ..core.tasks.multilabel_scores import compute_metrics, sigmoid

            return compute_metrics(self.y, sigmoid(logits), self.thresholds or 0.5, names=self.labels)
        from ..core.evaluate import compute_metrics as single_label_metrics, softmax

        return single_label_metrics(self.y, logits.argmax(1), softmax(logits), names=self.labels)

    def decision_thresholds(self) -> list[float]:
        """A multi-label task's per-label thresholds (0.5 each where its run recorded none)."""
        return list(self.thresholds["per_label"]) if self.thresholds else [0.5] * len(self.labels)

    def add(self, method: str, logits: np.ndarray, params: int, combo: Combination | None = None) -> None:
        if logits.shape != (len(self.y), len(self.labels)):
            raise MergingError(f"{method} scored {logits.shape} logits for task {self.name!r}, which has "
                               f"{len(self.y)} test rows and {len(self.labels)} classes.")
        self.logits[method] = logits
        self.params[method] = int(params)
        self.kinds[method] = combo.to_dict() if combo is not None else {}


OWN = "own adapter"
HEAD_ONLY = "head only"
MULTITASK = "multi-task"


def merge_method(combo: Combination) -> str:
    return f"merge {combo.label}"


def score_merged(adapter_dirs: Sequence[Path], combinations: Sequence[Combination],
                 device: str | torch.device | None = None,
                 rows: Sequence[np.ndarray | None] | None = None) -> list[TaskScores]:
    """Every task's test rows scored by its own head on each merged adapter, and on its own adapter.

    For task t: the base is rebuilt with t's labels and t's trained head, the LoRA-only copies of
    all adapters are loaded, and each combination is merged, made active, scored and deleted. The
    own adapter is rescored through the same path (t's factors active), so the pairs compare like
    with like. Refused before anything is built: see :func:`check_mergeable`.
    """
    from transformers import AutoTokenizer

    adapters = [read_adapter(Path(d)) for d in adapter_dirs]
    check_mergeable(adapters)
    for combo in combinations:
        _check_ranks(adapters, combo)
    tokenizer = AutoTokenizer.from_pretrained(str(adapters[0].directory))
    with lora_only_copies(adapters) as copies:
        return [_score_task(adapters, t, copies, tokenizer, combinations, device, rows[t] if rows else None)
                for t in range(len(adapters))]


def _score_task(adapters: Sequence[SavedAdapter], t: int, copies: Sequence[Path], tokenizer: Any,
                combinations: Sequence[Combination], device: str | torch.device | None,
                rows: np.ndarray | None = None) -> TaskScores:
    from ..core.evaluate import predict_logits

    a = adapters[t]
    dev = _device(a.cfg, device)
    precision = _precision(a.cfg, dev)
    dataset, y = task_test_rows(a.cfg, tokenizer, rows)
    head = a.head_tensors()
    base = _task_base(a.cfg, a.labels, tokenizer, head, a.info.get("base_fingerprint"), str(a.directory),
                      multi_label=a.multi_label)
    model = _with_adapters(base, copies).to(dev)
    scores = TaskScores(a.name, a.labels, y, thresholds=a.info.get("thresholds") if a.multi_label else None)

    def score() -> np.ndarray:
        return predict_logits(model, dataset, tokenizer.pad_token_id, a.cfg.eval_batch_size, dev, precision)

    own = f"{TASK_PREFIX}{t}"
    model.set_adapter(own, inference_mode=True)
    scores.add(OWN, score(), adapter_params(model, own) + _count(head))
    for combo in combinations:
        say(f"merging: task {a.name}, {combo.label}")
        name = add_merged(model, len(adapters), combo)
        scores.add(merge_method(combo), score(), adapter_params(model, name) + _count(head), combo)
        model.set_adapter(own, inference_mode=True)
        model.delete_adapter(name)
    return scores


# --------------------------------------------------------------------------- merged adapter on disk
def merge_adapters(adapter_dirs: Sequence[Path], combination: str | Combination,
                   weights: Sequence[float] | None = None, density: float | None = None,
                   out_dir: Path | None = None, *, svd_rank: int | None = None, seed: int = DEFAULT_SEED) -> Path:
    """Write one merged adapter directory for all tasks; :func:`load_merged` scores any of them.

    ``OUT/adapter_model.safetensors`` + ``adapter_config.json``: the merged LoRA factors only (PEFT
    format, no ``modules_to_save``); ``OUT/heads/<i>.safetensors``: task i's trained head under the
    base model's own parameter names; the shared tokenizer; ``OUT/lora_agnews_merge.json``: the
    combination and, per task, its name, labels, configuration and head file. ``combination``: a
    :class:`Combination`, or a PEFT combination type with ``weights`` (None: 1.0 each), ``density``
    (pruning types only), ``svd_rank`` and ``seed`` (DARE's masks). Every check runs before
    ``out_dir`` is touched; the directory is written into a temporary sibling and renamed.
    """
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from ..core.adapter import PEFT_CONFIG_FILE, WEIGHTS_FILE, refusal
    from ..core.runs import atomic_directory

    combo = combination if isinstance(combination, Combination) else make_combination(
        combination, weights, density, svd_rank, seed)
    if out_dir is None:
        raise MergingError("merge_adapters needs out_dir, the directory to write the merged adapter into.")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file())):
        raise MergingError(f"{out_dir} exists and is not a merged adapter directory; choose a new output directory "
                           f"(an earlier merge there is replaced).")
    adapters = [read_adapter(Path(d)) for d in adapter_dirs]
    check_mergeable(adapters)
    _check_ranks(adapters, combo)
    tokenizer = AutoTokenizer.from_pretrained(str(adapters[0].directory))
    first = adapters[0]
    with lora_only_copies(adapters) as copies:
        base = _task_base(first.cfg, first.labels, tokenizer, first.head_tensors(), first.info.get("base_fingerprint"),
                          str(first.directory))
        model = _with_adapters(base, copies)
        add_merged(model, len(adapters), combo)
        state = {k: v.detach().cpu().contiguous()
                 for k, v in get_peft_model_state_dict(model, adapter_name=MERGED, save_embedding_layers=False).items()}
        peft_config = model.peft_config[MERGED]
    merged_params = _count(state)
    with atomic_directory(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        config = peft_config.to_dict()
        # PEFT's own load would put the factors on a fresh head of no task: refused, naming load_merged
        config.update(modules_to_save=None, inference_mode=True, task_type=refusal(
            "it merges several tasks' LoRA factors; each task's head is in heads/", MERGED_LOADER, export=False))
        write_json(config, tmp / PEFT_CONFIG_FILE)
        (tmp / "heads").mkdir()
        tasks = []
        for i, a in enumerate(adapters):
            head = {k: v.contiguous() for k, v in a.head_tensors().items()}
            save_file(head, str(tmp / "heads" / f"{i}.safetensors"))
            tasks.append({"name": a.name, "labels": list(a.labels), "config": a.cfg.to_dict(),
                          "head": f"heads/{i}.safetensors", "source_adapter": str(a.directory.resolve()),
                          "base_fingerprint": a.info.get("base_fingerprint"), "head_params": _count(head),
                          "trainable_params": merged_params + _count(head),
                          **({"multi_label": True, "thresholds": a.info.get("thresholds")} if a.multi_label else {})})
        tokenizer.save_pretrained(str(tmp))
        write_json({"format": MANIFEST_FORMAT, "combination": combo.to_dict(), "rank": int(peft_config.r),
                    "merged_lora_params": merged_params,
                    "all_heads_params": int(sum(t["head_params"] for t in tasks)), "tasks": tasks},
                   tmp / MANIFEST_FILE)
    say(f"merged {len(adapters)} adapters ({combo.label}, rank {peft_config.r}) -> {out_dir}")
    return out_dir


def read_manifest(directory: Path) -> dict[str, Any]:
    directory = Path(directory)
    if not (directory / MANIFEST_FILE).is_file():
        raise MergingError(f"{directory} is not a merged adapter directory (no {MANIFEST_FILE}); write one with "
                           f"lora_agnews.studies.merging.merge_adapters.")
    manifest = read_json(directory / MANIFEST_FILE)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise MergingError(f"{directory / MANIFEST_FILE} has format {manifest.get('format')!r}, this version reads "
                           f"{MANIFEST_FORMAT}; merge the adapters again.")
    return manifest


def merged_thresholds(directory: Path, task: str) -> dict[str, Any] | None:
    """The thresholds a merged multi-label task's own run chose on validation (None: single-label or unrecorded)."""
    entry = next((t for t in read_manifest(directory)["tasks"] if t["name"] == task), {})
    return entry.get("thresholds") if entry.get("multi_label") else None


def merged_tasks(directory: Path) -> list[str]:
    """The names of the tasks a merged adapter directory can score."""
    return [t["name"] for t in read_manifest(directory)["tasks"]]


def load_merged(directory: Path, task: str, device: str | torch.device = "cpu") -> tuple[Any, Any, Config]:
    """``(model, tokenizer, config)`` scoring ``task`` with its own head on the merged adapter in ``directory``.

    The base is rebuilt for the task's labels, its head loaded, then the merged LoRA factors (PEFT's
    ``PeftModel.from_pretrained``). The model's labels are the task's: ``predict_texts`` and
    ``model_labels`` read them as for any saved adapter.
    """
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from ..core.adapter import trained_peft_config
    from ..core.encoders import quiet

    directory = Path(directory)
    manifest = read_manifest(directory)
    entry = next((t for t in manifest["tasks"] if t["name"] == task), None)
    if entry is None:
        names = [t["name"] for t in manifest["tasks"]]
        raise MergingError(f"{directory} holds no task {task!r}; it merges {', '.join(names)}. Pass one of these.")
    cfg = from_dict(entry["config"])
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    head = load_file(str(directory / entry["head"]))
    base = _task_base(cfg, entry["labels"], tokenizer, head, entry.get("base_fingerprint"), str(directory),
                      multi_label=bool(entry.get("multi_label", False)))
    with quiet():
        model = PeftModel.from_pretrained(base, str(directory), config=trained_peft_config(directory, cfg))
    model.to(device).eval()
    return model, tokenizer, cfg
