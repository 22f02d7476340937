"""The merging study: one adapter per task on one frozen encoder, merged every way, every task scored.

:func:`run_study` trains one LoRA adapter per task (through :func:`lora_agnews.core.train.train_owned`,
so complete runs are reused), scores every merged combination with each task's own head
(:func:`lora_agnews.studies.merging.score_merged`), and frames each task by the same test rows scored three
more ways: its own adapter (the ceiling), its head alone on the frozen encoder (the floor) and one
adapter trained on all tasks at once (:mod:`lora_agnews.studies.multitask`). :func:`results_frame` /
:func:`results_dict` turn the logits into accuracy with a bootstrap interval, accuracy relative to
the own adapter, the paired difference to it with its interval and McNemar's test, and the
trainable count of every model scored. :func:`run_profile_study` is what notebook 05 calls.

* **One tokenizer.** Merged LoRA factors act on one embedding table, so every task must read text
  through the same vocabulary. A pretrained tokenizer already is one; ``tokenizer local`` (the
  smoke profile) would build a different word-level vocabulary per task, so the study builds ONE
  word-level tokenizer from the union of the tasks' whole training files, saves it as
  ``OUT/tokenizer-<hash>`` and points every task's ``tokenizer`` at it (the hash of its vocabulary
  is in the path, so a changed vocabulary is a changed configuration, never a reused run).

On a tiny randomly initialised encoder (tests, smoke) all numbers prove the machinery, not merging.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.paths import quiet_libraries, say, write_json
from .comparison import Arm, check_same_rows, compare
from .yardsticks import chance_rate, reaches_chance, retention
from ..core.config import Config
from ..core.tasks.registry import AGNEWS, TASKS
from .merging import (Combination, EQUAL_RANKS, HEAD_ONLY, MergingError, MULTITASK, NEEDS_DENSITY, OWN, TaskScores,
                      _check_method, _check_names, _tokenizer_digest, default_combinations, make_combination,
                      score_merged, task_name)
from .multitask import check_multitask_budget, head_only_model, train_head_only, train_multitask, trainable_count

STUDY_FILE = "merging.json"
STUDY_TABLE = "merging.csv"
STUDY_FORMAT = 1
MERGED_LOGITS = "merging_logits.npz"  # every merged combination's test logits, which the audit re-scores
# what the study keeps of each task's own run (where its rows came from, how many it used)
TASK_FACTS = ("data_source", "labels", "n_train_available", "n_train_used", "n_validation", "n_test_available",
              "n_test_used", "train_seconds", "trainable_params")

# --------------------------------------------------------------------------- the study: tasks on one base
def task_data(cfg: Config, task: str) -> str:
    """Where a study's task reads its rows: AG News reads ``data`` (hub, sample or an AG News directory); a
    registered task the hub when ``data`` is hub, else its offline PyPI copy (an AG News directory means
    nothing to it); a task directory is its own data."""
    from ..core.tasks.registry import HUB, PYPI

    if task == AGNEWS:
        return cfg.data
    if task in TASKS:
        return HUB if cfg.data == HUB else PYPI
    return cfg.data


def task_configs(cfg: Config, tasks: Sequence[str]) -> list[Config]:
    """``cfg`` once per task (``task`` set; a task directory made absolute), each checked mergeable."""
    if len(tasks) < 2:
        raise MergingError(f"a merging study needs at least 2 tasks; got {len(tasks)} ({', '.join(map(str, tasks))}).")
    cfgs = []
    for task in tasks:
        task = resolve_task(str(task))
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
    from ..core.dataset import load_task
    from ..core.encoders import build_local_tokenizer

    texts = [text for c in cfgs for text in load_task(c)[0]["text"].tolist()]
    return build_local_tokenizer(texts)


def shared_tokenizer_dir(out_dir: Path, tokenizer: Any) -> Path:
    """Where the study keeps its shared tokenizer: named by its vocabulary, so another one is another path."""
    return Path(out_dir) / f"tokenizer-{_tokenizer_digest(tokenizer)}"


def save_tokenizer(tokenizer: Any, directory: Path) -> Path:
    from ..core.runs import atomic_directory

    if not (Path(directory) / "tokenizer.json").is_file():
        with atomic_directory(Path(directory)) as tmp:
            tokenizer.save_pretrained(str(tmp))
    return Path(directory)


def _refuse_label_sets(cfgs: Sequence[Config], names: Sequence[str]) -> None:
    """The head-only floor and the multi-task model train one class per row (cross-entropy): a multi-label task
    cannot join them. Its adapter still merges (``merge_adapters`` / ``score_merged``), scored by its own metrics."""
    from ..core.dataset import load_task

    multi = [n for c, n in zip(cfgs, names) if load_task(c)[2].multi_label]
    if multi:
        raise MergingError(f"task(s) {', '.join(multi)} are multi-label, but the study's head-only floor and multi-task "
                           f"model train one class per row; leave them out of merge_tasks, or merge their adapters "
                           f"with `python -m lora_agnews merge` (each task keeps its head and its own metrics).")


def _budget_check(cfg: Config, tokenizer: Any) -> dict[str, Any]:
    from ..core.budget import check_budget, parameter_breakdown
    from ..core.build import build_model

    breakdown = parameter_breakdown(build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                meta=True))
    check_budget(breakdown, cfg)
    return breakdown


# --------------------------------------------------------------------------- the study and its results
def study_tasks(cfg: Config, tasks: Sequence[str], out_dir: Path) -> tuple[list[Config], list[str], Any, Path | None]:
    """Each task's configuration as the study trains it (the shared tokenizer's directory set where ``tokenizer
    local``), the tasks' names, and the shared tokenizer with its directory (both None: a pretrained tokenizer,
    which :func:`run_study` builds itself). Writes nothing."""
    cfgs = task_configs(cfg, tasks)
    if cfg.tokenizer != "local":  # built only where it is used: the plan lists the runs without the hub
        return cfgs, [task_name(c) for c in cfgs], None, None
    tokenizer = build_shared_tokenizer(cfgs)
    tok_dir = shared_tokenizer_dir(Path(out_dir).resolve(), tokenizer)
    cfgs = [c.replace(tokenizer=str(tok_dir)) for c in cfgs]
    return cfgs, [task_name(c) for c in cfgs], tokenizer, tok_dir


@dataclass
class Study:
    """Every task's test rows scored every way, and how the study was run."""

    tasks: list[TaskScores]
    combinations: list[Combination]
    settings: dict[str, Any]
    seed: int = 0


def run_study(cfg: Config, tasks: Sequence[str], out_dir: Path, combinations: Sequence[Combination] | None = None,
              floor: bool = True, multitask: bool = True, results_dir: Path | None = None) -> Study:
    """Train one adapter per task on one frozen encoder, merge them every way, and score each task.

    Writes ``OUT/tasks/<task>/`` (train runs: reused when complete), ``OUT/head_only/<task>/``,
    ``OUT/multitask/``, ``OUT/tokenizer-<hash>/`` (``tokenizer local`` only), and the results
    ``merging.json`` and ``merging.csv`` in ``results_dir`` (default ``OUT``). Every refusal (methods that cannot merge, tasks
    with the same name, a configuration over the budget, ranks or densities a combination cannot
    take) comes before anything is written.
    """
    from ..core.dataset import task_labels
    from ..core.encoders import build_tokenizer
    from ..core.train import train_owned

    quiet_libraries()
    combinations = list(combinations if combinations is not None else default_combinations())
    out_dir = Path(out_dir).resolve()
    cfgs, names, tokenizer, tok_dir = study_tasks(cfg, tasks, out_dir)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(cfgs[0])
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
    if floor or multitask:
        _refuse_label_sets(cfgs, names)
    ranks = [c.lora_r for c in cfgs]
    for combo in combinations:
        if combo.weights is not None and len(combo.weights) != len(cfgs):
            raise MergingError(f"{len(combo.weights)} weight(s) for {len(cfgs)} tasks; give one weight per task.")
        if combo.kind in EQUAL_RANKS and len(set(ranks)) > 1:
            raise MergingError(f"combination {combo.kind!r} needs adapters of one rank; got ranks {ranks}.")
    # ---- nothing was written before this line
    if tok_dir is not None:
        save_tokenizer(tokenizer, tok_dir)
    run_dirs, facts, seconds = [], {}, {}
    clock = time.perf_counter()
    for c, name in zip(cfgs, names):
        say(f"merging study: training task {name}")
        metrics = train_owned(c, out_dir / "tasks" / name)
        facts[name] = {k: metrics.get(k) for k in TASK_FACTS}
        run_dirs.append(out_dir / "tasks" / name)
    seconds["task adapters"], clock = time.perf_counter() - clock, time.perf_counter()
    scores = merged_scores(cfg.profile, run_dirs, combinations, out_dir / MERGED_DIR)
    seconds["merging and scoring"], clock = time.perf_counter() - clock, time.perf_counter()
    own_gap = {}
    for s, d in zip(scores, run_dirs):
        with np.load(d / "test_predictions.npz") as saved:
            check_same_rows(s.y, saved["labels"], f"the saved predictions of task {s.name!r}")
            own_gap[s.name] = float(np.abs(saved["logits"] - s.logits[OWN]).max())
    if floor:
        for s, c in zip(scores, cfgs):
            logits, y, n = train_head_only(c, out_dir / "head_only" / s.name)
            check_same_rows(s.y, y, f"the head-only floor of task {s.name!r}")
            s.add(HEAD_ONLY, logits, n)
        seconds["head-only floor"], clock = time.perf_counter() - clock, time.perf_counter()
    if multitask:
        logits_list, ys, n = train_multitask(cfgs, out_dir / "multitask")
        for s, logits, y in zip(scores, logits_list, ys):
            check_same_rows(s.y, y, f"the multi-task model on task {s.name!r}")
            s.add(MULTITASK, logits, n)
        seconds["multi-task adapter"] = time.perf_counter() - clock
    settings = {"base": {k: getattr(cfg, k) for k in ("model_name", "init", "seed", "head", "lora_r", "lora_alpha",
                                                       "lora_targets", "epochs", "budget")},
                "tokenizer": (f"shared word-level tokenizer built from the union of the tasks' training files: {tok_dir}"
                              if tok_dir is not None else f"{cfg.tokenizer or cfg.model_name} (pretrained, shared)"),
                "task_dirs": {n: str(d) for n, d in zip(names, run_dirs)},
                # the floor's and the multi-task model's runs (record, test logits, trained tensors): the audit's
                "head_only_dirs": {n: str(out_dir / "head_only" / n) for n in names} if floor else {},
                "multitask_dir": str(out_dir / "multitask") if multitask else None,
                "merged_dir": str(out_dir / MERGED_DIR),
                "own_rescore_max_abs_diff": own_gap, "pretrained": cfg.init == "pretrained",
                "task_facts": facts, "seconds": {k: round(v, 1) for k, v in seconds.items()},
                "steps": training_steps(dict(zip(names, run_dirs)), out_dir / "multitask" if multitask else None)}
    study = Study(scores, combinations, settings, cfg.seed)
    written = save_results(study, out_dir if results_dir is None else Path(results_dir))
    say(f"merging study: {len(scores)} tasks x {len(combinations)} combinations -> {written}")
    return study


# --------------------------------------------------------------------------- merged scores, kept as a run
MERGED_DIR = "merged"
MERGED_RECORD = "merged.json"  # the key (the task runs merged and the combinations) and each task's scores' facts


def merged_scores_key(task_dirs: Sequence[Path], combinations: Sequence[Combination]) -> dict[str, Any]:
    """What identifies the merged scores: the task runs merged (their run keys) and every combination."""
    from ..core import runs

    return {"kind": "merged", "run_keys": [(runs.read_record(d) or {}).get("run_key") for d in task_dirs],
            "combinations": [c.to_dict() for c in combinations]}


def merged_scores(profile: str, task_dirs: Sequence[Path], combinations: Sequence[Combination],
                  run_dir: Path) -> list[TaskScores]:
    """Every task scored by its own adapter and every merged combination: kept in ``run_dir`` as a run of its own,
    so a complete one is reused and the archive restores it with the task adapters it merges (re-merging the base
    profile's adapters in fp32 on a CPU without bf16 units costs about 20 minutes; the audit re-scores a sample)."""
    from .multitask import _clear, _found

    key = merged_scores_key(task_dirs, combinations)
    record, arrays = run_dir / MERGED_RECORD, run_dir / "test_predictions.npz"
    if _found(profile, record, {"key": key}, arrays):
        return load_merged(record, arrays)
    scores = score_merged([d / "adapter" for d in task_dirs], combinations)
    _clear(run_dir)
    save_merged(scores, key, record, arrays)
    return scores


def save_merged(scores: Sequence[TaskScores], key: dict[str, Any], record: Path, arrays: Path) -> None:
    from ..core.runs import save_arrays

    logits = {f"{t}|{m}": s.logits[m] for t, s in enumerate(scores) for m in s.logits}
    save_arrays(arrays, **logits, **{f"{t}|y": s.y for t, s in enumerate(scores)})
    write_json({"key": key, "tasks": [{"name": s.name, "labels": list(s.labels), "methods": list(s.logits),
                                       "params": s.params, "kinds": s.kinds, "thresholds": s.thresholds}
                                      for s in scores]}, record)


def load_merged(record: Path, arrays: Path) -> list[TaskScores]:
    from ..core.paths import read_json

    tasks = read_json(record)["tasks"]
    with np.load(arrays) as saved:
        scores = []
        for t, task in enumerate(tasks):
            s = TaskScores(task["name"], tuple(task["labels"]), saved[f"{t}|y"], thresholds=task["thresholds"])
            for m in task["methods"]:
                s.logits[m], s.params[m], s.kinds[m] = saved[f"{t}|{m}"], int(task["params"][m]), task["kinds"][m]
            scores.append(s)
    return scores


COLUMNS = ("task", "method", "combination", "density", "accuracy", "ci_low", "ci_high", "chance", "near_chance",
           "retention", "diff_to_own", "diff_ci_low", "diff_ci_high", "mcnemar_p", "mcnemar_b", "mcnemar_c",
           "trainable_params", "n_test", "n_classes")


def results_frame(study: Study | Sequence[TaskScores], seed: int | None = None) -> pd.DataFrame:
    """One row per task x method: accuracy with its bootstrap 95% interval, the task's chance rate and whether the
    interval reaches it, the chance-corrected retention of the own adapter's gain (:func:`with_checks`), the paired
    difference to the own adapter (bootstrap interval, McNemar: ``b`` own right and this wrong, ``c`` the reverse)
    and the trainable count of the model scored (merged LoRA + the task's head)."""
    tasks = study.tasks if isinstance(study, Study) else list(study)
    seed = (study.seed if isinstance(study, Study) else 0) if seed is None else seed
    rows = []
    for s in tasks:
        rows_of = np.arange(len(s.y))  # the rows' identity for pairing (a multi-label y is a matrix)
        arms = [Arm(method, [s.correct(method)], [rows_of]) for method in s.logits]
        compared = compare(arms, OWN, seed, f"the merging study's task {s.name!r}")["arms"]
        for method, result in zip(s.logits, compared):
            acc, versus = result["mean"], result["vs_reference"]
            test = versus["mcnemar_per_seed"][0]
            kind = s.kinds.get(method, {})
            rows.append({"task": s.name, "method": method, "combination": kind.get("kind"),
                         "density": kind.get("density"), "accuracy": acc,
                         "ci_low": result["bootstrap_ci"][0], "ci_high": result["bootstrap_ci"][1],
                         "diff_to_own": versus["mean"], "diff_ci_low": versus["bootstrap_ci"][0],
                         "diff_ci_high": versus["bootstrap_ci"][1], "mcnemar_p": test["p_value"],
                         "mcnemar_b": test["c"], "mcnemar_c": test["b"],  # b: the own adapter right, this wrong
                         "trainable_params": s.params[method], "n_test": int(len(s.y)),
                         "n_classes": len(s.labels)})
    chance = {s.name: math.nan if s.multi_label else chance_rate(s.y, len(s.labels)) for s in tasks}
    return with_checks(pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in CHECKS]), chance)


CHECKS = ("chance", "near_chance", "retention")  # the columns :func:`with_checks` adds


def with_checks(frame: pd.DataFrame, chance: Mapping[str, float]) -> pd.DataFrame:
    """``frame`` (task x method rows) with each task's ``chance`` rate (``chance``: per task, :func:`yardsticks.
    chance_rate` of its test rows; NaN for a multi-label task), ``near_chance`` where a row's interval reaches it,
    and ``retention``, the chance-corrected share of the own adapter's gain the row keeps. A task whose own adapter
    reaches chance has no gain to keep: its retention is NaN for every method, so it leaves every retention figure."""
    frame = frame.drop(columns=[c for c in CHECKS if c in frame]).copy()
    frame["chance"] = [float(chance.get(t, math.nan)) for t in frame["task"]]
    frame["near_chance"] = [reaches_chance(lo, c) for lo, c in zip(frame["ci_low"], frame["chance"])]
    own = frame[frame["method"] == OWN].set_index("task")
    frame["retention"] = [math.nan if t not in own.index or own.at[t, "near_chance"]
                          else retention(a, own.at[t, "accuracy"], c)
                          for t, a, c in zip(frame["task"], frame["accuracy"], frame["chance"])]
    return frame[[c for c in COLUMNS if c in frame] + [c for c in frame if c not in COLUMNS]]


def task_chance(task_dirs: Mapping[str, Path]) -> dict[str, float]:
    """Each task's chance rate from the test rows its own run saved (``task_dirs``: task -> run directory)."""
    out = {}
    for name, run_dir in task_dirs.items():
        with np.load(Path(run_dir) / "test_predictions.npz") as saved:
            y, width = saved["labels"], saved["logits"].shape[1]
        out[name] = math.nan if np.ndim(y) == 2 else chance_rate(y, width)
    return out


def training_steps(task_dirs: Mapping[str, Path], multitask_dir: Path | None) -> dict[str, Any]:
    """The optimiser steps behind each task adapter (its record's ``global_steps``) and behind the multi-task model,
    which trains on every task's rows at once: its record's ``global_steps`` where it kept them, else its batches
    over the pooled rows (the tasks' ``n_train_used``, its batch size and epochs; ``computed`` says which)."""
    from ..core.paths import read_json

    tasks = {name: read_json(Path(d) / "metrics.json") for name, d in task_dirs.items()}
    out: dict[str, Any] = {"tasks": {n: m.get("global_steps") for n, m in tasks.items()},
                           "rows": {n: m.get("n_train_used") for n, m in tasks.items()}}
    record_file = Path(multitask_dir) / "multitask.json" if multitask_dir is not None else None
    if record_file is None or not record_file.is_file():
        return out
    record = read_json(record_file)
    if record.get("global_steps") is not None:
        return {**out, "multitask": int(record["global_steps"]), "computed": False}
    first = record["configs"][0]
    pooled = sum(int(n or 0) for n in out["rows"].values())
    steps = math.ceil(math.ceil(pooled / int(first["batch_size"])) * float(first["epochs"]))
    return {**out, "multitask": steps, "computed": True}


def save_results(study: Study, directory: Path) -> Path:
    """``merging.csv`` and ``merging.json`` in ``directory`` (the bootstrap computed once for both)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frame = results_frame(study)
    frame.to_csv(directory / STUDY_TABLE, index=False)
    from ..core.runs import save_arrays

    save_arrays(directory / MERGED_LOGITS, **{merged_key(s.name, method): logits for s in study.tasks  # the audit's
                                              for method, logits in s.logits.items() if s.kinds.get(method)})
    return write_json(results_dict(study, frame), directory / STUDY_FILE)


def results_dict(study: Study, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """The study as plain JSON-able data: settings, tasks, combinations and the rows of :func:`results_frame`
    (NaN as None); ``frame``: that frame when the caller has it already."""
    frame = results_frame(study) if frame is None else frame
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else _plain(v)) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]
    return {"format": STUDY_FORMAT, "settings": study.settings,
            "tasks": [{"name": s.name, "labels": list(s.labels), "n_test": int(len(s.y))} for s in study.tasks],
            "combinations": [c.to_dict() for c in study.combinations], "rows": rows,
            "note": None if study.settings.get("pretrained") else
            "randomly initialised encoder: these numbers prove the pipeline, not what merging does"}


def merged_key(task: str, method: str) -> str:
    """A merged combination's key in ``MERGED_LOGITS``."""
    return f"{task}::{method}"


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- the study of a profile (notebook 05)
def resolve_task(task: str) -> str:
    """A task name as given, or a task directory made absolute: a relative path names a directory under
    the working directory when one exists there, else under the repository (profiles name shipped data,
    ``data/tasks/reviews``, and papermill runs notebooks from a build folder)."""
    from ..core import paths

    if task in TASKS:
        return task
    here = Path(task).expanduser()
    if here.is_dir() or here.is_absolute():
        return str(here.resolve())
    shipped = paths.ROOT / here
    return str(shipped.resolve()) if shipped.is_dir() else str(here)


def profile_tasks(cfg: Config) -> list[str]:
    """The tasks of ``merge_tasks`` (comma-separated names or ``label,text`` directories), resolved."""
    return [resolve_task(t.strip()) for t in cfg.merge_tasks.split(",") if t.strip()]


def profile_combinations(cfg: Config) -> list[Combination]:
    """``merge_combinations`` with ``merge_density`` where the kind prunes (PEFT's default weights, 1 each)."""

    kinds = [k.strip() for k in cfg.merge_combinations.split(",") if k.strip()]
    if not kinds:
        raise MergingError("merge_combinations is empty; name at least one of PEFT's combination types, e.g. ties.")
    return [make_combination(k, density=cfg.merge_density if k in NEEDS_DENSITY else None) for k in kinds]


def study_config(cfg: Config) -> Config:
    """``cfg`` with the study's per-task sizes: ``merge_train_samples`` / ``merge_val_samples`` /
    ``merge_eval_samples`` / ``merge_max_length`` / ``merge_lora_r`` when set (a task's validation split is a share of its
    training file, so the larger tasks would otherwise spend most of the study selecting checkpoints;
    BBC articles fill any length, so their cost follows ``max_length``; a rank that fills the budget
    with one head leaves no room for the multi-task model's other heads)."""
    return cfg.replace(max_length=cfg.merge_max_length or cfg.max_length, lora_r=cfg.merge_lora_r or cfg.lora_r,
                       max_train_samples=cfg.merge_train_samples or cfg.max_train_samples,
                       max_val_samples=cfg.merge_val_samples or cfg.max_val_samples,
                       max_eval_samples=cfg.merge_eval_samples or cfg.max_eval_samples)


def study_dir(cfg: Config) -> Path:
    """Where a profile's study trains and keeps its runs: ``results/<profile>/runs/merging``."""
    from ..core import paths

    return paths.runs_dir(cfg.profile) / "merging"


def run_profile_study(cfg: Config) -> Study:
    """Notebook 05's measurement: :func:`run_study` on the profile's ``merge_tasks`` at the profile's study
    sizes, every combination of ``merge_combinations``; the results go to ``results/<profile>/merging.json``
    and ``merging.csv`` (the book and the report read them), the runs to :func:`study_dir`."""
    from ..core import paths

    return run_study(study_config(cfg), profile_tasks(cfg), study_dir(cfg), profile_combinations(cfg),
                     results_dir=paths.results_dir(cfg.profile))


def profile_runs(cfg: Config) -> list[tuple[str, Path, list[Config]]]:
    """``(kind, directory, configurations)`` of every model notebook 05 trains (:func:`run_profile_study`): each task's
    adapter (``run``), each task's head-only floor (``head_only``) and the multi-task model (``multitask``, all the
    tasks' configurations). The list the plan shows; :func:`run_study` trains the same directories."""
    out_dir = study_dir(cfg).resolve()
    cfgs, names, _, _ = study_tasks(study_config(cfg), profile_tasks(cfg), out_dir)
    return ([("run", out_dir / "tasks" / n, [c]) for c, n in zip(cfgs, names)]
            + [("head_only", out_dir / "head_only" / n, [c]) for c, n in zip(cfgs, names)]
            + [("multitask", out_dir / "multitask", cfgs)])


def save_profile_tokenizer(cfg: Config) -> Path | None:
    """Write the profile study's shared tokenizer where its tasks' configurations name it (None: a pretrained one):
    what a machine that trains one of the study's models without the others needs first."""
    _, _, tokenizer, tok_dir = study_tasks(study_config(cfg), profile_tasks(cfg), study_dir(cfg).resolve())
    return None if tok_dir is None else save_tokenizer(tokenizer, tok_dir)
