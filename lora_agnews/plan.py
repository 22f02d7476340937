"""The plan: every run a profile's notebooks need, what identifies it, what it costs, and whether it must be computed.

``python -m lora_agnews plan --profile P`` prints it; the engines (:mod:`lora_agnews.engines`) compute its runs
elsewhere before the notebooks render. The plan never derives a run itself: each study lists its own runs
(:func:`lora_agnews.pipeline.main_run_dir`, :func:`lora_agnews.studies.multilabel_study.study_config`,
:func:`lora_agnews.studies.experiments.ablation_runs` and :func:`~lora_agnews.studies.experiments.seed_runs`,
:func:`lora_agnews.studies.merging_study.profile_runs`, :func:`lora_agnews.studies.quantize_study.study_configs`),
the same functions the notebooks train through, so the plan and the notebooks cannot disagree.

Each run is in one of five states:

* ``complete``: its directory (or, for the grid and the seed study, any directory: experiments.reusable_run)
  holds it;
* ``same as PATH``: an earlier run of the plan is the same computation, and the notebooks read it there;
* ``restorable``: ``archive/<profile>`` holds it, and the notebooks restore it;
* ``compute``: it must be trained;
* ``over budget``: a grid variant the notebooks list and never train.

The seed study's grid settings (``study_top``) are picked on the grid's validation accuracy, so they are known
only once every grid run is complete or restorable: until then the plan lists them as pending.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .core import config as config_mod, hardware, paths, runs
from .core.config import Config
from .core.paths import read_json
from .core.tasks.registry import AGNEWS

STUDIES = ("main", "multilabel", "ablation", "seeds", "merging", "quantization")  # the notebooks' order
KINDS = {"run": runs.RUN_FILE, "head_only": "head_only.json", "multitask": "multitask.json"}
TO_COMPUTE = "compute"
# Training throughput where no run of the model was measured here yet: the guide's measured figures
# (book/guide/speed.md, benchmarks/README.md), examples per second of the real training command.
REFERENCE_THROUGHPUT = {("roberta-base", "gpu"): (2263.0, "measured on one H100 (book/guide/speed.md)")}
# Rows of the sources a profile reads whole (max_train_samples 0), for the estimate only.
KNOWN_TRAIN_ROWS = {"hub": 120_000, "rotten_tomatoes": 8_530, "bbc_news": 1_225}


class PlanError(paths.ProjectError):
    """The plan cannot be made as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Job:
    """One model a notebook trains: its study, its directory, its kind and the configuration(s) it trains with."""

    study: str
    path: Path
    kind: str  # run | head_only | multitask (the merging study's own models)
    configs: tuple[Config, ...]
    shared: bool = False  # the grid and the seed study read a run of this identity wherever it is complete
    isolated: bool = False  # trained in a process of its own (the quantization study measures its memory)
    over_budget: bool = False
    rel: str = field(init=False)  # its path under results/<profile>, fixed when planned

    def __post_init__(self) -> None:
        object.__setattr__(self, "rel", str(self.path.relative_to(paths.results_dir(self.cfg.profile))))

    @property
    def cfg(self) -> Config:
        return self.configs[0]

    @property
    def record_file(self) -> str:
        return KINDS[self.kind]

    def current(self) -> dict[str, Any]:
        """What this checkout's record of the model holds: its key and configuration(s)."""
        from .studies.multitask import head_only_identity, multitask_identity

        if self.kind == "run":
            return {"run_key": runs.run_key(self.cfg), "config": self.cfg.to_dict()}
        if self.kind == "head_only":
            return head_only_identity(self.cfg)
        return multitask_identity(self.configs)

    def key(self) -> Any:
        current = self.current()
        return current.get("run_key", current.get("key"))

    def tag(self) -> str:
        """The hash of its identity: the first half of its archive entry's id."""
        from .core.archive import identity

        return runs.key_tag(identity(self.key()))


@dataclass
class Planned:
    job: Job
    status: str  # complete | same as PATH | restorable | compute | over budget
    seconds: float | None  # estimated, on the machine the throughput was measured on
    where: str = ""  # for complete: the directory that holds it, when another

    @property
    def to_compute(self) -> bool:
        return self.status == TO_COMPUTE


@dataclass
class Plan:
    profile: str
    cfg: Config
    items: list[Planned]
    pending: list[str] = field(default_factory=list)
    throughput: tuple[float, str] | None = None  # examples per second, and where it was measured

    def count(self, status: str) -> int:
        return sum(1 for p in self.items if p.status == status or (status == "same" and p.status.startswith("same")))

    def to_compute(self) -> list[Planned]:
        return [p for p in self.items if p.to_compute]

    def seconds_to_compute(self) -> float | None:
        costs = [p.seconds for p in self.to_compute()]
        return None if any(c is None for c in costs) else float(sum(costs))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- what each study trains
def jobs(cfg: Config, ablation: Any = None, grid: list[Any] | None = None) -> list[Job]:
    """Every model the notebooks train for ``cfg``, in the notebooks' order; ``ablation``: the grid's table, from
    which the seed study picks its grid settings (None: those are left out); ``grid``: experiments.ablation_runs
    already made."""
    from .pipeline import main_run_dir
    from .studies import experiments, merging_study, multilabel_study, quantize_study

    out = [Job("main", main_run_dir(cfg), "run", (cfg,))]
    out.append(Job("multilabel", multilabel_study.run_dir(cfg), "run", (multilabel_study.study_config(cfg),)))
    for variant, own, params, _ in experiments.ablation_runs(cfg) if grid is None else grid:
        out.append(Job("ablation", own, "run", (variant,), shared=True, over_budget=params > variant.budget))
    for _, setting, name in experiments.seed_settings(cfg, ablation):
        out += [Job("seeds", own, "run", (run_cfg,), shared=True) for _, run_cfg, own in experiments.seed_runs(setting, name)]
    for kind, directory, cfgs in merging_study.profile_runs(cfg):
        out.append(Job("merging", directory, kind, tuple(cfgs)))
    for scheme, seed, variant in quantize_study.study_configs(cfg):
        out.append(Job("quantization", quantize_study.run_dir(cfg, scheme, seed), "run", (variant,), isolated=True))
    return out


# --------------------------------------------------------------------------- state
def complete_here(job: Job) -> Path | None:
    """The directory that holds this model complete now (for a shared run: any, as experiments.reusable_run finds)."""
    from .studies.experiments import reusable_run

    if job.kind == "run":
        if job.shared:
            return reusable_run(job.cfg, own=job.path)
        record = runs.read_record(job.path) or {}
        same = record.get("status") == "complete" and runs.same_key(record.get("run_key"), job.key())
        return job.path if same and (job.path / runs.METRICS_FILE).is_file() else None
    from .studies.multitask import TRAINABLE_FILE, _key_matches

    files = (job.path / "test_predictions.npz", job.path / TRAINABLE_FILE)
    return job.path if _key_matches(job.path / job.record_file, job.key(), *files) else None


def archived(job: Job) -> Path | None:
    """The archive entry the notebooks would restore for this model, or None."""
    from .core.archive import entry_dir

    return entry_dir(job.cfg.profile, job.key(), job.rel)


def metrics_of(variant: Config, own: Path) -> dict[str, Any] | None:
    """A grid variant's metrics wherever the notebooks would read them (results, else its archive entry)."""
    from .studies.experiments import reusable_run

    found = reusable_run(variant, own=own)
    if found is not None:
        return read_json(found / runs.METRICS_FILE)
    entry = archived(Job("ablation", own, "run", (variant,)))
    return read_json(entry / runs.METRICS_FILE) if entry is not None else None


# --------------------------------------------------------------------------- cost
def train_rows(cfg: Config) -> int | None:
    """Training rows of one epoch (before the validation split is carved; an estimate)."""
    if cfg.max_train_samples:
        return cfg.max_train_samples
    if cfg.task != AGNEWS:
        local = Path(cfg.task) / "train.csv"
        return _lines(local) if local.is_file() else KNOWN_TRAIN_ROWS.get(cfg.task)
    if cfg.data == "hub":
        return KNOWN_TRAIN_ROWS["hub"]
    directory = paths.SAMPLE_DATA if cfg.data == "sample" else Path(cfg.data)
    return _lines(directory / "train.csv") if (directory / "train.csv").is_file() else None


def _lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def example_epochs(job: Job) -> float | None:
    rows = [train_rows(c) for c in job.configs]
    if any(r is None for r in rows):
        return None
    return float(sum(rows)) * job.cfg.epochs  # type: ignore[arg-type]


def measured_throughput(profile: str, model: str) -> tuple[float, str] | None:
    """Examples (times epochs) per second of wall time, training and test scoring included, measured by the complete
    runs of ``model`` in results/<profile> and archive/<profile> that were computed on this machine's kind."""
    kind = hardware.kind_of(hardware.machine())
    rates = []
    records = [d / runs.RUN_FILE for d in runs.complete_runs(paths.runs_dir(profile))]
    entries = paths.archive_dir(profile) / "entries"
    records += sorted(entries.glob(f"*/{runs.RUN_FILE}")) if entries.is_dir() else []
    for record_path in records:
        rate = _rate(record_path, model, kind)
        if rate:
            rates.append(rate)
    if not rates:
        return None
    return statistics.median(rates), f"median of {len(rates)} run(s) of {model} on {kind}"


def _rate(record_path: Path, model: str, kind: str) -> float | None:
    try:
        record, metrics = read_json(record_path), read_json(record_path.parent / runs.METRICS_FILE)
    except (OSError, ValueError):
        return None
    computed = (record.get(runs.RESTORED) or {}).get("computed", {}).get("machine") or record.get("machine")
    where = hardware.kind_of(computed)
    config = record.get("config") or {}
    seconds = float(metrics.get("train_seconds") or 0) + float(metrics.get("eval_seconds") or 0)
    used = record.get("n_train_used")
    if config.get("model_name") != model or where != kind or seconds <= 0 or not used:
        return None
    return float(used) * float(config.get("epochs", 1)) / seconds


def throughput(cfg: Config) -> tuple[float, str] | None:
    """The examples per second the estimates use: measured here, else the guide's figure for this model, else None."""
    measured = measured_throughput(cfg.profile, cfg.model_name)
    if measured:
        return measured
    gpu = hardware.machine()["gpu"] != "none"
    return REFERENCE_THROUGHPUT.get((cfg.model_name, "gpu" if gpu else "cpu"))


# --------------------------------------------------------------------------- the plan
def make(profile: str, overrides: dict[str, Any] | None = None) -> Plan:
    """The plan of ``profile`` with ``overrides`` (as ``run`` takes them: relative paths are made absolute)."""
    from .pipeline import absolute_paths
    from .studies import experiments

    cfg = config_mod.load(profile, absolute_paths(dict(overrides or {})))
    ablation, pending = None, []
    grid = experiments.ablation_runs(cfg)  # counts every variant's parameters: made once
    if cfg.study_top:
        ablation = experiments.grid_table(cfg, metrics_of, grid)
        if ablation is None:
            pending.append(f"seeds: {cfg.study_top} grid setting(s) x {cfg.n_seeds} seed(s), picked on the grid's "
                           f"validation accuracy once every grid run is complete or restorable")
    rate = throughput(cfg)
    items, first_at = [], {}
    for job in jobs(cfg, ablation, grid):
        seconds = _seconds(job, rate)
        if job.over_budget:
            items.append(Planned(job, "over budget", None))
            continue
        where = complete_here(job)
        tag = job.tag()
        if where is not None:
            items.append(Planned(job, "complete", seconds, "" if where == job.path else _rel(where, profile)))
        elif job.shared and tag in first_at:
            items.append(Planned(job, f"same as {first_at[tag]}", seconds))
        elif archived(job) is not None:
            items.append(Planned(job, "restorable", seconds))
        else:
            items.append(Planned(job, TO_COMPUTE, seconds))
        first_at.setdefault(tag, job.rel if where is None else _rel(where, profile))
    return Plan(profile, cfg, items, pending, rate)


def _rel(path: Path, profile: str) -> str:
    return str(Path(path).relative_to(paths.results_dir(profile)))


def _seconds(job: Job, rate: tuple[float, str] | None) -> float | None:
    examples = example_epochs(job)
    return None if rate is None or examples is None else examples / rate[0]


# --------------------------------------------------------------------------- showing it
def differences(job: Job, cfg: Config) -> str:
    """What sets this model apart from the profile's configuration, in ``key=value`` words."""
    base, mine = cfg.to_dict(), job.cfg.to_dict()
    changed = [f"{k}={_short(mine[k])}" for k in mine if mine[k] != base.get(k) and k != "tokenizer"]
    if job.kind == "multitask":
        changed.insert(0, f"tasks={len(job.configs)}")
    return ", ".join(changed) or "the profile's"


def _short(value: Any) -> str:
    text = str(value)
    return Path(text).name if "/" in text else text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def lines(plan: Plan, wide: bool = False) -> list[str]:
    """The plan as the command prints it: a summary line, one line per model, the pending ones."""
    rate = f"{plan.throughput[0]:,.1f} examples/s, {plan.throughput[1]}" if plan.throughput else "no throughput measured"
    out = [f"plan: profile {plan.profile}, {len(plan.items)} model(s): {plan.count('complete')} complete, "
           f"{plan.count('same')} read from another path, {plan.count('restorable')} restorable from "
           f"archive/{plan.profile}, {plan.count(TO_COMPUTE)} to compute (estimated "
           f"{duration(plan.seconds_to_compute())} on one worker at {rate})"]
    out.append(f"{'study':<13}{'identity':<12}{'estimate':>9}  {'status':<22}path")
    for p in plan.items:
        status = p.status if not p.status.startswith("same") else "same as"
        where = p.where or (p.status[len("same as "):] if status == "same as" else "")
        out.append(f"{p.job.study:<13}{p.job.tag():<12}{duration(p.seconds):>9}  {status:<22}{p.job.rel}"
                   + (f" (read at {where})" if where else ""))
        if wide:
            out.append(f"{'':<13}{differences(p.job, plan.cfg)}")
    out += [f"pending: {text}" for text in plan.pending]
    return out


def as_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON (``plan --json``)."""
    return {"profile": plan.profile, "throughput": plan.throughput, "pending": plan.pending,
            "models": [{"study": p.job.study, "path": p.job.rel, "kind": p.job.kind, "identity": p.job.tag(),
                        "differs_from_profile": differences(p.job, plan.cfg), "estimated_seconds": p.seconds,
                        "status": p.status, "at": p.where or None} for p in plan.items]}


def select(plan: Plan, statuses: Sequence[str]) -> list[Planned]:
    return [p for p in plan.items if p.status in statuses]
