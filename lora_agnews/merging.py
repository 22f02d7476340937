"""Multi-task LoRA merging, measured: one adapter per task, merged with PEFT, each task scored by its own head.

The study (:func:`run_study`) trains one LoRA adapter per task on the same frozen encoder (through
:func:`lora_agnews.train.train_owned`, so complete runs are reused), merges their LoRA updates with
PEFT's ``add_weighted_adapter`` for each combination type, and scores every task with ITS OWN
trained head on the merged adapter. Each task is framed by the same test rows scored three more
ways: its own adapter (the ceiling), its head trained alone on the frozen encoder (the floor), and
one LoRA adapter trained jointly on all tasks with one linear head per task (multi-task learning).
:func:`results_frame` / :func:`results_dict` turn the logits into accuracy with a bootstrap
interval, accuracy relative to the own adapter, the paired difference to it with its interval and
McNemar's test, and the trainable count of every model scored.

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
* **The floor** trains the task's head alone (the same head the adapter trains) on the frozen
  encoder, through the same Trainer path (:func:`lora_agnews.train.fit`): a LoRA with no targets
  does not exist, and BitFit trains biases too.
* **Multi-task learning** uses one linear head per task on the first token: at roberta-base scale
  three ``default`` heads alone (593,668 parameters each) would exceed the 1,000,000 budget, while
  linear heads cost hidden x classes. Batches mix the tasks (length-grouped over their union); the
  loss is each row's cross-entropy under its own task's head.

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
import pandas as pd
import torch
from torch import nn

from .artifacts import read_json, write_json
from .config import Config
from .data import TokenizedDataset, encode, load_splits
from .progress import say

# PEFT's combination types (peft/tuners/lora/model.py, LoraModel.add_weighted_adapter).
COMBINATIONS: tuple[str, ...] = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SVD_VARIANTS: tuple[str, ...] = ("ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
ALL_COMBINATIONS: tuple[str, ...] = COMBINATIONS + SVD_VARIANTS
EQUAL_RANKS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")  # PEFT's own rank check
NEEDS_DENSITY = ("ties", "dare_linear", "dare_ties", "magnitude_prune", *SVD_VARIANTS)
DEFAULT_DENSITY = 0.5
DEFAULT_SEED = 0  # DARE's random masks: one draw, the same for every task's scoring and for merge_adapters

MANIFEST_FILE = "lora_agnews_merge.json"
MANIFEST_FORMAT = 1
STUDY_FILE = "merging.json"
STUDY_TABLE = "merging.csv"
STUDY_FORMAT = 1
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
    def rank(self) -> int:
        pattern = self.peft_config.get("rank_pattern") or {}
        return max([int(self.peft_config["r"]), *map(int, pattern.values())])

    def tensors(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        from .adapter import WEIGHTS_FILE

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
    from .sources import TASKS
    from .tasks import AGNEWS

    if cfg.task == AGNEWS or cfg.task in TASKS:
        return cfg.task
    path = Path(cfg.task).expanduser()
    return path.name or str(path)


def read_adapter(directory: Path) -> SavedAdapter:
    """A saved adapter directory (``RUN/adapter``), checked complete and readable."""
    from .adapter import CONFIG_FILE, AdapterError, check_adapter_dir
    from .config import ConfigError, from_dict
    from .tasks import AGNEWS_LABELS

    directory = Path(directory)
    check_adapter_dir(directory)
    try:
        info = read_json(directory / CONFIG_FILE)
        cfg = from_dict(info["config"])
        peft_config = read_json(directory / "adapter_config.json")
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise AdapterError(f"{directory} holds an unreadable or older adapter ({exc}); retrain it with this "
                           f"version of lora_agnews.") from None
    return SavedAdapter(directory, cfg, tuple(info.get("labels") or AGNEWS_LABELS), info, peft_config)


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
    if cfg.method != "lora":
        why = ("it is trained against residual base weights of its own (its initialisation changes the base)"
               if cfg.method in ("pissa", "olora") else "it has no LoRA factors for add_weighted_adapter to combine")
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

    from .adapter import WEIGHTS_FILE

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
    from .adapter import AdapterError

    expected = _head_names(base, modules)
    if set(head) != expected:
        raise AdapterError(f"{where}: the saved head holds {sorted(head)}, but this base's head has {sorted(expected)}. "
                           f"Retrain the adapter with this version of lora_agnews.")
    try:
        base.load_state_dict(head, strict=False)
    except RuntimeError as exc:
        raise AdapterError(f"{where}: the saved head does not fit the base model ({str(exc)[:300]}).") from None


def _task_base(cfg: Config, labels: Sequence[str], tokenizer: Any, head: dict[str, torch.Tensor],
               fingerprint: str | None, where: str) -> nn.Module:
    """The frozen encoder rebuilt for one task (its labels, its head type) with its trained head in place."""
    from .adapter import AdapterError, base_fingerprint
    from .model import _base_model, _quiet, apply_head

    torch.manual_seed(cfg.seed)
    with _quiet():
        base = _base_model(cfg, len(tokenizer), tokenizer.pad_token_id, labels=labels)
    if fingerprint is not None and base_fingerprint(base, cfg.method) != fingerprint:
        raise AdapterError(f"the randomly initialised base rebuilt for {where} differs from the one it was trained on "
                           f"(another torch/transformers version?). Retrain it here.")
    plan = apply_head(base, cfg.head)
    _load_head(base, plan.modules_to_save, head, where)
    return base


def _with_adapters(base: nn.Module, lora_dirs: Sequence[Path]) -> Any:
    """``base`` with every task's LoRA factors loaded as adapters task0, task1, ... (none active but task0)."""
    from peft import PeftModel

    from .model import _quiet

    with _quiet():
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
    from .model import resolve_precision

    return resolve_precision(cfg, device)


def _device(cfg: Config, device: str | torch.device | None) -> torch.device:
    from .model import device_for

    return torch.device(device) if device is not None else device_for(cfg)


def task_test_rows(cfg: Config, tokenizer: Any) -> tuple[TokenizedDataset, np.ndarray]:
    """The task's test rows (the same subset every run of the configuration is scored on), encoded."""
    test = load_splits(cfg).test
    return encode(test, tokenizer, cfg.max_length), test["label"].to_numpy()


# --------------------------------------------------------------------------- scores
@dataclass
class TaskScores:
    """One task's test rows scored every way: ``logits[method]`` and the trainable count behind each."""

    name: str
    labels: tuple[str, ...]
    y: np.ndarray
    logits: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    params: dict[str, int] = dataclasses.field(default_factory=dict)
    kinds: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # method -> combination settings

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
                 device: str | torch.device | None = None) -> list[TaskScores]:
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
        return [_score_task(adapters, t, copies, tokenizer, combinations, device) for t in range(len(adapters))]


def _score_task(adapters: Sequence[SavedAdapter], t: int, copies: Sequence[Path], tokenizer: Any,
                combinations: Sequence[Combination], device: str | torch.device | None) -> TaskScores:
    from .evaluate import predict_logits

    a = adapters[t]
    dev = _device(a.cfg, device)
    precision = _precision(a.cfg, dev)
    dataset, y = task_test_rows(a.cfg, tokenizer)
    head = a.head_tensors()
    base = _task_base(a.cfg, a.labels, tokenizer, head, a.info.get("base_fingerprint"), str(a.directory))
    model = _with_adapters(base, copies).to(dev)
    scores = TaskScores(a.name, a.labels, y)

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

    from .adapter import WEIGHTS_FILE
    from .runs import atomic_directory

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
        config.update(modules_to_save=None, inference_mode=True)
        write_json(config, tmp / "adapter_config.json")
        (tmp / "heads").mkdir()
        tasks = []
        for i, a in enumerate(adapters):
            head = {k: v.contiguous() for k, v in a.head_tensors().items()}
            save_file(head, str(tmp / "heads" / f"{i}.safetensors"))
            tasks.append({"name": a.name, "labels": list(a.labels), "config": a.cfg.to_dict(),
                          "head": f"heads/{i}.safetensors", "source_adapter": str(a.directory.resolve()),
                          "base_fingerprint": a.info.get("base_fingerprint"), "head_params": _count(head),
                          "trainable_params": merged_params + _count(head)})
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
                           f"lora_agnews.merging.merge_adapters.")
    manifest = read_json(directory / MANIFEST_FILE)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise MergingError(f"{directory / MANIFEST_FILE} has format {manifest.get('format')!r}, this version reads "
                           f"{MANIFEST_FORMAT}; merge the adapters again.")
    return manifest


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

    from .config import from_dict
    from .model import _quiet

    directory = Path(directory)
    manifest = read_manifest(directory)
    entry = next((t for t in manifest["tasks"] if t["name"] == task), None)
    if entry is None:
        names = [t["name"] for t in manifest["tasks"]]
        raise MergingError(f"{directory} holds no task {task!r}; it merges {', '.join(names)}. Pass one of these.")
    cfg = from_dict(entry["config"])
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    head = load_file(str(directory / entry["head"]))
    base = _task_base(cfg, entry["labels"], tokenizer, head, entry.get("base_fingerprint"), str(directory))
    with _quiet():
        model = PeftModel.from_pretrained(base, str(directory))
    model.to(device).eval()
    return model, tokenizer, cfg


# --------------------------------------------------------------------------- the study: tasks on one base
def task_data(cfg: Config, task: str) -> str:
    """Where a study's task reads its rows: AG News reads ``data`` (hub, sample or an AG News directory); a
    registered task the hub when ``data`` is hub, else its offline PyPI copy (an AG News directory means
    nothing to it); a task directory is its own data."""
    from .sources import HUB, PYPI, TASKS
    from .tasks import AGNEWS

    if task == AGNEWS:
        return cfg.data
    if task in TASKS:
        return HUB if cfg.data == HUB else PYPI
    return cfg.data


def task_configs(cfg: Config, tasks: Sequence[str]) -> list[Config]:
    """``cfg`` once per task (``task`` set; a task directory made absolute), each checked mergeable."""
    from .sources import TASKS
    from .tasks import AGNEWS

    if len(tasks) < 2:
        raise MergingError(f"a merging study needs at least 2 tasks; got {len(tasks)} ({', '.join(map(str, tasks))}).")
    cfgs = []
    for task in tasks:
        task = str(task)
        if task != AGNEWS and task not in TASKS and Path(task).expanduser().is_dir():
            task = str(Path(task).expanduser().resolve())
        one = cfg.replace(task=task, data=task_data(cfg, task))
        _check_method(one, f"task {task}")
        cfgs.append(one)
    if cfg.distill_logits:
        raise MergingError(f"distill_logits {cfg.distill_logits} holds one task's teacher logits, but the study trains "
                           f"{len(cfgs)} tasks from one configuration; leave distill_logits empty.")
    _check_names([task_name(c) for c in cfgs], [c.task for c in cfgs])
    return cfgs


def build_shared_tokenizer(cfgs: Sequence[Config]) -> Any:
    """One word-level tokenizer from the union of the tasks' whole training files (``tokenizer local``)."""
    from .data import load_task
    from .model import build_local_tokenizer

    texts = [text for c in cfgs for text in load_task(c)[0]["text"].tolist()]
    return build_local_tokenizer(texts)


def shared_tokenizer_dir(out_dir: Path, tokenizer: Any) -> Path:
    """Where the study keeps its shared tokenizer: named by its vocabulary, so another one is another path."""
    return Path(out_dir) / f"tokenizer-{_tokenizer_digest(tokenizer)}"


def save_tokenizer(tokenizer: Any, directory: Path) -> Path:
    from .runs import atomic_directory

    if not (Path(directory) / "tokenizer.json").is_file():
        with atomic_directory(Path(directory)) as tmp:
            tokenizer.save_pretrained(str(tmp))
    return Path(directory)


def _budget_check(cfg: Config, tokenizer: Any) -> dict[str, Any]:
    from .model import build_model, check_budget, parameter_breakdown

    breakdown = parameter_breakdown(build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                meta=True))
    check_budget(breakdown, cfg)
    return breakdown


# --------------------------------------------------------------------------- floor: the head alone
def head_only_model(cfg: Config, tokenizer: Any, labels: Sequence[str], meta: bool = False) -> nn.Module:
    """The frozen encoder with the configuration's head, the head the only trainable part (a plain
    transformers model: the floor of what an adapter adds)."""
    from .model import _base_model, _quiet, apply_head

    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, _quiet():
        base = _base_model(cfg if not meta else cfg.replace(init="random"), len(tokenizer), tokenizer.pad_token_id,
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
        return read_json(record).get("key") == json_roundtrip(key)
    except ValueError:
        return False


def json_roundtrip(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing recorded keys."""
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _train_prepared(cfg: Config, splits: Any, tokenizer: Any, model: nn.Module, train_ds: TokenizedDataset,
                    val_ds: TokenizedDataset, run_dir: Path) -> Any:
    """The project's Trainer path (:func:`lora_agnews.train.fit`) for a model train.prepare does not build."""
    from .model import parameter_breakdown
    from .train import Prepared, by_length, fit

    prep = Prepared(cfg, splits, tokenizer, train_ds, by_length(val_ds), val_ds, model, parameter_breakdown(model))
    trainer = fit(prep, run_dir)
    return trainer.model


def _clear(run_dir: Path) -> None:
    import shutil

    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def train_head_only(cfg: Config, run_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Train the task's head alone on the frozen encoder; ``(test logits, test labels, trainable count)``.

    A complete run of the same configuration in ``run_dir`` is reused (``head_only.json`` records its
    key); the Trainer's checkpoints (whole models, frozen encoder included) are removed afterwards.
    """
    import shutil

    from transformers import set_seed

    from .model import BudgetError, build_tokenizer
    from .runs import save_arrays

    run_dir = Path(run_dir)
    key = {"kind": "head_only", "run_key": cfg.run_key()}
    record, arrays = run_dir / "head_only.json", run_dir / "test_predictions.npz"
    if _key_matches(record, key, arrays):
        with np.load(arrays) as saved:
            return saved["logits"], saved["labels"], int(read_json(record)["trainable_params"])
    from .progress import interactive

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
    model = _train_prepared(cfg, splits, tokenizer, model, train_ds, val_ds, run_dir)
    from .evaluate import predict_logits

    dev = _device(cfg, None)
    test_ds = encode(splits.test, tokenizer, cfg.max_length)
    logits = predict_logits(model.to(dev), test_ds, tokenizer.pad_token_id, cfg.eval_batch_size, dev, _precision(cfg, dev))
    labels = splits.test["label"].to_numpy()
    save_arrays(arrays, logits=logits, labels=labels)
    write_json({"key": key, "trainable_params": params, "task": task_name(cfg), "labels": list(splits.labels),
                "accuracy": float((logits.argmax(1) == labels).mean())}, record)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return logits, labels, params


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

    from .model import FirstTokenLinearHead, HeadPlan, _base_model, _quiet, check_targets, family, lora_config

    torch.manual_seed(cfg.seed)
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx, _quiet():
        base = _base_model(cfg if not meta else cfg.replace(init="random"), len(tokenizer), tokenizer.pad_token_id,
                           labels=labels[0])
        fam = family(base)
        check_targets(base, cfg, fam)
        peft_model = get_peft_model(base, lora_config(cfg, HeadPlan((), ()), base.config.num_hidden_layers, fam))
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
    from .model import BudgetError

    n = trainable_count(build_multitask(cfg, labels, names, tokenizer, meta=True))
    if n > cfg.budget:
        raise BudgetError(f"the multi-task model trains {n:,} parameters (shared LoRA + {len(names)} linear heads), "
                          f"over the budget of {cfg.budget:,}. Lower lora_r or drop targets; refused before training.")
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

    from safetensors.torch import save_file
    from transformers import set_seed

    from .evaluate import predict_logits
    from .model import build_tokenizer
    from .runs import save_arrays

    cfg = cfgs[0]
    run_dir = Path(run_dir)
    key = {"kind": "multitask", "run_keys": [c.run_key() for c in cfgs]}
    record, arrays = run_dir / "multitask.json", run_dir / "test_predictions.npz"
    if _key_matches(record, key, arrays):
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
    model = _train_prepared(cfg, splits[0], tokenizer, model, train_ds, val_ds, run_dir)
    dev = _device(cfg, None)
    model.to(dev).eval()
    logits, ys = [], []
    for i, (c, s) in enumerate(zip(cfgs, splits)):
        test_ds = encode(s.test, tokenizer, c.max_length)
        logits.append(predict_logits(OneTask(model, i), test_ds, tokenizer.pad_token_id, c.eval_batch_size, dev,
                                     _precision(c, dev)))
        ys.append(s.test["label"].to_numpy())
    save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
              str(run_dir / "trainable.safetensors"))
    save_arrays(arrays, **{f"logits_{i}": x for i, x in enumerate(logits)}, **{f"labels_{i}": y for i, y in enumerate(ys)})
    write_json({"key": key, "trainable_params": params, "tasks": names, "labels": [list(x) for x in labels],
                "accuracy": {n: float((x.argmax(1) == y).mean()) for n, x, y in zip(names, logits, ys)}}, record)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return logits, ys, params


# --------------------------------------------------------------------------- the study and its results
@dataclass
class Study:
    """Every task's test rows scored every way, and how the study was run."""

    tasks: list[TaskScores]
    combinations: list[Combination]
    settings: dict[str, Any]
    seed: int = 0


def _same_rows(scores: TaskScores, labels: np.ndarray, what: str) -> None:
    if labels.shape != scores.y.shape or not np.array_equal(labels, scores.y):
        raise MergingError(f"{what} for task {scores.name!r} was scored on other test rows than its adapter "
                           f"({len(labels)} vs {len(scores.y)}); rerun the study into a new directory.")


def run_study(cfg: Config, tasks: Sequence[str], out_dir: Path, combinations: Sequence[Combination] | None = None,
              floor: bool = True, multitask: bool = True) -> Study:
    """Train one adapter per task on one frozen encoder, merge them every way, and score each task.

    Writes ``OUT/tasks/<task>/`` (train runs: reused when complete), ``OUT/head_only/<task>/``,
    ``OUT/multitask/``, ``OUT/tokenizer-<hash>/`` (``tokenizer local`` only), and the results
    ``OUT/merging.json`` and ``OUT/merging.csv``. Every refusal (methods that cannot merge, tasks
    with the same name, a configuration over the budget, ranks or densities a combination cannot
    take) comes before anything is written.
    """
    from .data import task_labels
    from .model import build_tokenizer
    from .progress import quiet_libraries
    from .train import train_owned

    quiet_libraries()
    combinations = list(combinations if combinations is not None else default_combinations())
    cfgs = task_configs(cfg, tasks)
    out_dir = Path(out_dir).resolve()
    tokenizer = build_shared_tokenizer(cfgs) if cfg.tokenizer == "local" else build_tokenizer(cfgs[0])
    tok_dir = shared_tokenizer_dir(out_dir, tokenizer) if cfg.tokenizer == "local" else None
    if tok_dir is not None:
        cfgs = [c.replace(tokenizer=str(tok_dir)) for c in cfgs]
    names = [task_name(c) for c in cfgs]
    for c in cfgs:
        _budget_check(c, tokenizer)
    if floor:
        for c in cfgs:
            head = trainable_count(head_only_model(c, tokenizer, task_labels(c), meta=True))
            if head > c.budget:
                raise MergingError(f"the head of task {task_name(c)} alone trains {head:,} parameters, over the "
                                   f"budget of {c.budget:,}.")
    if multitask:
        check_multitask_budget(cfgs[0], [task_labels(c) for c in cfgs], names, tokenizer)
    ranks = [c.lora_r for c in cfgs]
    for combo in combinations:
        if combo.weights is not None and len(combo.weights) != len(cfgs):
            raise MergingError(f"{len(combo.weights)} weight(s) for {len(cfgs)} tasks; give one weight per task.")
        if combo.kind in EQUAL_RANKS and len(set(ranks)) > 1:
            raise MergingError(f"combination {combo.kind!r} needs adapters of one rank; got ranks {ranks}.")
    # ---- nothing was written before this line
    if tok_dir is not None:
        save_tokenizer(tokenizer, tok_dir)
    run_dirs = []
    for c, name in zip(cfgs, names):
        say(f"merging study: training task {name}")
        train_owned(c, out_dir / "tasks" / name)
        run_dirs.append(out_dir / "tasks" / name)
    scores = score_merged([d / "adapter" for d in run_dirs], combinations)
    own_gap = {}
    for s, d in zip(scores, run_dirs):
        with np.load(d / "test_predictions.npz") as saved:
            _same_rows(s, saved["labels"], "the adapter's saved predictions")
            own_gap[s.name] = float(np.abs(saved["logits"] - s.logits[OWN]).max())
    if floor:
        for s, c in zip(scores, cfgs):
            logits, y, n = train_head_only(c, out_dir / "head_only" / s.name)
            _same_rows(s, y, "the head-only floor")
            s.add(HEAD_ONLY, logits, n)
    if multitask:
        logits_list, ys, n = train_multitask(cfgs, out_dir / "multitask")
        for s, logits, y in zip(scores, logits_list, ys):
            _same_rows(s, y, "the multi-task model")
            s.add(MULTITASK, logits, n)
    settings = {"base": {k: getattr(cfg, k) for k in ("model_name", "init", "seed", "head", "lora_r", "lora_alpha",
                                                       "lora_targets", "epochs", "budget")},
                "tokenizer": (f"shared word-level tokenizer built from the union of the tasks' training files: {tok_dir}"
                              if tok_dir is not None else f"{cfg.tokenizer or cfg.model_name} (pretrained, shared)"),
                "task_dirs": {n: str(d) for n, d in zip(names, run_dirs)},
                "own_rescore_max_abs_diff": own_gap, "pretrained": cfg.init == "pretrained"}
    study = Study(scores, combinations, settings, cfg.seed)
    results_frame(study).to_csv(out_dir / STUDY_TABLE, index=False)
    write_json(results_dict(study), out_dir / STUDY_FILE)
    say(f"merging study: {len(scores)} tasks x {len(combinations)} combinations -> {out_dir / STUDY_FILE}")
    return study


COLUMNS = ("task", "method", "combination", "density", "accuracy", "ci_low", "ci_high", "normalised_accuracy",
           "diff_to_own", "diff_ci_low", "diff_ci_high", "mcnemar_p", "mcnemar_b", "mcnemar_c", "trainable_params",
           "n_test")


def results_frame(study: Study | Sequence[TaskScores], seed: int | None = None) -> pd.DataFrame:
    """One row per task x method: accuracy with its bootstrap 95% interval, accuracy over the own adapter's,
    the paired difference to the own adapter (bootstrap interval, McNemar: ``b`` own right and this wrong,
    ``c`` the reverse) and the trainable count of the model scored (merged LoRA + the task's head)."""
    from .experiments import bootstrap_ci, mcnemar, paired_difference_ci

    tasks = study.tasks if isinstance(study, Study) else list(study)
    seed = (study.seed if isinstance(study, Study) else 0) if seed is None else seed
    rows = []
    for s in tasks:
        own = s.logits[OWN].argmax(1) == s.y
        own_acc = float(own.mean())
        for method, logits in s.logits.items():
            correct = logits.argmax(1) == s.y
            acc = float(correct.mean())
            ci = bootstrap_ci(correct, seed=seed)
            diff = paired_difference_ci(correct[None].astype(float), own[None].astype(float), seed)
            test = mcnemar(own, correct)
            kind = s.kinds.get(method, {})
            rows.append({"task": s.name, "method": method, "combination": kind.get("kind"),
                         "density": kind.get("density"), "accuracy": acc, "ci_low": ci[0], "ci_high": ci[1],
                         "normalised_accuracy": acc / own_acc if own_acc > 0 else float("nan"),
                         "diff_to_own": acc - own_acc, "diff_ci_low": diff[0], "diff_ci_high": diff[1],
                         "mcnemar_p": test["p_value"], "mcnemar_b": test["b"], "mcnemar_c": test["c"],
                         "trainable_params": s.params[method], "n_test": int(len(s.y))})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def results_dict(study: Study) -> dict[str, Any]:
    """The study as plain JSON-able data: settings, tasks, combinations and the rows of :func:`results_frame`
    (NaN as None)."""
    frame = results_frame(study)
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else _plain(v)) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]
    return {"format": STUDY_FORMAT, "settings": study.settings,
            "tasks": [{"name": s.name, "labels": list(s.labels), "n_test": int(len(s.y))} for s in study.tasks],
            "combinations": [c.to_dict() for c in study.combinations], "rows": rows,
            "note": None if study.settings.get("pretrained") else
            "randomly initialised encoder: these numbers prove the pipeline, not what merging does"}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
