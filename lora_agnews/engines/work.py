"""What a worker does with one model of the plan: train it in a private tree and return it as an archive entry.

A worker shares no file system with the driver. It gets the model as plain data (:func:`spec`: the profile, the
study, the path under results/<profile>, the kind and the configurations with this checkout's paths written
portable), trains it into a temporary results tree of its own (with an empty archive, so that it computes and
never restores), writes the archive entry of what it trained, adapter included, and returns the entry's files as
bytes. The driver adds the entry to ``archive/<profile>`` and copies it into ``results/<profile>`` as a restore
does (:mod:`lora_agnews.engines.install`).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..core import paths, runs
from ..core.config import Config, from_dict
from ..core.paths import read_json

# the variables that place a run's outputs: a worker points them at its own temporary tree
PLACES = ("LORA_AGNEWS_RESULTS", "LORA_AGNEWS_ARCHIVE", "LORA_AGNEWS_BUILD")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def spec(job: Any, cfg: Config) -> dict[str, Any]:
    """A plan's :class:`lora_agnews.plan.Job` of the profile configuration ``cfg`` as plain data a worker elsewhere
    can read."""
    from ..core.archive import portable

    return {"profile": job.cfg.profile, "study": job.study, "rel": job.rel, "kind": job.kind,
            "isolated": job.isolated, "configs": [portable(c.to_dict()) for c in job.configs],
            "profile_config": portable(cfg.to_dict())}


def localise(value: Any) -> Any:
    """The inverse of :func:`lora_agnews.core.archive.portable`: ``<results>/...`` and ``<repository>/...`` named here."""
    if isinstance(value, dict):
        return {k: localise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [localise(v) for v in value]
    if isinstance(value, str):
        for name, root in (("<results>", paths.results_root()), ("<repository>", paths.ROOT)):
            if value == name or value.startswith(f"{name}/"):
                return str(root) + value[len(name):]
    return value


@contextlib.contextmanager
def private_tree(threads: int) -> Iterator[Path]:
    """Outputs under a new temporary directory, and ``threads`` torch threads, while open; all put back after."""
    import torch

    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="lora-agnews-work-") as tmp:
        values: dict[str, str | None] = {name: str(Path(tmp) / name.rsplit("_", 1)[-1].lower()) for name in PLACES}
        values |= {name: str(threads) for name in THREAD_VARIABLES}  # the quantization study's processes inherit them
        with paths.environment(**values, **{runs.RESTORE_ONLY_ENV: None}):
            torch.set_num_threads(threads)
            try:
                yield Path(tmp)
            finally:
                torch.set_num_threads(before)


def compute(job: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train the model ``job`` (:func:`spec`) with ``threads`` CPU threads; its archive entry: ``{"id", "path",
    "files": {name: bytes}}``. Runs in the worker's process; what it raises reaches the driver."""
    from ..core.archive import Source, entry_id, write_entry

    with private_tree(threads) as tmp:
        configs = [from_dict(localise(c)) for c in job["configs"]]
        run_dir = paths.results_dir(job["profile"]) / job["rel"]
        _train(job, configs, from_dict(localise(job["profile_config"])), run_dir)
        record_file = {"run": runs.RUN_FILE, "head_only": "head_only.json", "multitask": "multitask.json"}[job["kind"]]
        record = read_json(run_dir / record_file)
        key = record.get("run_key", record.get("key"))
        eid = entry_id(key, job["rel"])
        target = tmp / "entry" / job["profile"] / "entries" / eid
        write_entry(target, Source(run_dir, job["rel"], record_file, key), adapter=True)
        files = {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.rglob("*")) if p.is_file()}
    return {"id": eid, "path": job["rel"], "files": files}


def _train(job: dict[str, Any], configs: list[Config], profile_cfg: Config, run_dir: Path) -> None:
    """Train as the study does: the quantization study in a process of its own, the merging study's models after
    writing its shared tokenizer where their configurations name it (built from the same tasks' files, it has
    the same vocabulary, so the same directory)."""
    from ..pipeline import quiet_training
    from ..studies import merging_study, multitask, quantize_study
    from ..core.train import train_owned

    cfg = configs[0]
    if job["study"] == "merging":
        merging_study.save_profile_tokenizer(profile_cfg)
    with quiet_training():
        if job["kind"] == "head_only":
            multitask.train_head_only(cfg, run_dir)
        elif job["kind"] == "multitask":
            multitask.train_multitask(configs, run_dir)
        elif job["isolated"]:
            quantize_study.train_isolated(cfg, run_dir)
        else:
            train_owned(cfg, run_dir)
