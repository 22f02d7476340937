"""Run directories and their records: status, resolved config, versions, commit, device.

A run directory is the unit that aggregation, the book and the report read. Its
``run.json`` says whether it is complete; readers refuse anything else, so a crashed or
half-finished run can never leak a number into a table.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import paths
from .artifacts import read_json, write_json
from .config import Config

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"


class RunError(RuntimeError):
    """A run directory cannot be used as asked; the message says why and what to do."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "scikit-learn", "numpy", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.ROOT,
                               capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: Any) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except ValueError:
        return None


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(record, Path(run_dir) / RUN_FILE)


def prepare(run_dir: Path, cfg: Config, overwrite: bool = False) -> str:
    """Claim ``run_dir`` for ``cfg``. Returns ``new``, ``resume`` or ``complete``.

    A directory that holds a different configuration's run is refused unless
    ``overwrite``: its checkpoints would otherwise be resumed into the wrong experiment.
    """
    import shutil

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record is None:
        if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
            raise RunError(f"{run_dir} is not empty and holds no run record; choose another --out "
                           f"or pass --overwrite to replace its contents.")
        if overwrite and run_dir.is_dir():
            shutil.rmtree(run_dir)
        return "new"
    same = record.get("run_key") == cfg.run_key()
    if not same and not overwrite:
        old = record.get("run_key") or {}
        diff = sorted(k for k in set(old) | set(cfg.run_key()) if old.get(k) != cfg.run_key().get(k))
        raise RunError(f"{run_dir} holds a run of a different configuration (differs in: {', '.join(diff[:8])}). "
                       f"Choose another --out, or pass --overwrite (CLI) / overwrite=True to replace it.")
    if overwrite and (not same or record.get("status") == "complete"):
        shutil.rmtree(run_dir)
        return "new"
    return "complete" if record.get("status") == "complete" else "resume"


def start(run_dir: Path, cfg: Config, device: Any) -> dict[str, Any]:
    previous = read_record(run_dir) or {}
    record = {"status": "running", "config": cfg.to_dict(), "run_key": cfg.run_key(),
              "versions": library_versions(), "git_commit": git_commit(), "device": device_description(device),
              "started": previous.get("started", now()), "updated": now(),
              "attempts": int(previous.get("attempts", 0)) + 1, "error": None}
    write_record(run_dir, record)
    return record


def finish(run_dir: Path, record: dict[str, Any], error: BaseException | None = None) -> None:
    record = {**record, "updated": now()}
    if error is None:
        record.update(status="complete", finished=now())
    else:
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
    write_record(run_dir, record)


def load_complete(run_dir: Path) -> dict[str, Any]:
    """Metrics of a complete run; a clear error for missing, running or failed ones."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record is None:
        raise RunError(f"{run_dir} holds no run record (run.json); train it first "
                       f"(python -m lora_agnews train --out {run_dir}).")
    if record.get("status") != "complete":
        why = f": {record['error']}" if record.get("error") else ""
        raise RunError(f"run {run_dir} is {record.get('status')}{why}; it is not used. Rerun the same command "
                       f"to resume it, or pass --overwrite to start over.")
    metrics = read_json(run_dir / METRICS_FILE)
    return metrics
