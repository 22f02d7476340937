"""Run directories and their records: status, resolved config, versions, commit, device.

A run directory is the unit that aggregation, the book and the report read. Its
``run.json`` says whether it is complete; readers refuse anything else, so a crashed or
half-finished run can never leak a number into a table.

Life of a run directory::

    RunLock  held by the one process that trains into the directory (``.lock``, flock)
    check()  read-only: new | resume | complete | replace | aside, or a RunError (wrong config, live run)
    claim()  the only step that changes what is there (``replace`` removes what training wrote,
             ``aside`` moves another configuration's run to :func:`paths.superseded_dir`); called
             after the data and the budget were validated, so a failing call never costs an earlier run
    start()  status "running" with config, versions, commit, device, pid, host
    finish() status "complete", or "failed" with the error

A process killed with SIGKILL leaves status "running" and its pid dead: :func:`scan` reports
it as ``interrupted`` and the next ``train`` with the same directory resumes it from its last
complete checkpoint (:func:`last_checkpoint`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import hardware, paths
from .checkpoints import model_identity
from .paths import _atomic_write_bytes, read_json, say, write_json
from .config import Config

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".lock"
TENSORBOARD_DIR = "tensorboard"
# Everything ``train`` writes into a run directory: --overwrite replaces a directory that holds nothing else,
# so a user's file that found its way into --out is never deleted with the run.
RUN_ENTRIES = frozenset({RUN_FILE, METRICS_FILE, "history.json", "test_predictions.npz", "adapter", CHECKPOINTS,
                         TENSORBOARD_DIR, LOCK_FILE})
DATA_KEY = "data_sha256"
# The Trainer writes trainer_state.json last: a checkpoint without it was cut off mid-save.
CHECKPOINT_COMPLETE_MARKER = "trainer_state.json"
STATUSES = ("complete", "running", "interrupted", "failed", "invalid")


class RunError(paths.ProjectError):
    """A run directory cannot be used as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- restore-only
# Set to 1 by ``run --restore-only`` (the publishing workflow's books): every run must already be complete in
# results/ or come from archive/<profile>; :func:`refuse_training` stops the first one that would train, so a job
# that cannot restore fails in seconds instead of training for hours. Kernels and study subprocesses inherit it.
RESTORE_ONLY_ENV = "LORA_AGNEWS_RESTORE_ONLY"
RESTORE_ONLY = "restore-only:"  # how the refusal begins, so the pipeline can show it as its own one-line error


def restore_only() -> bool:
    """Whether training is refused (:data:`RESTORE_ONLY_ENV` set to 1, true or yes)."""
    return os.environ.get(RESTORE_ONLY_ENV, "").strip().lower() in ("1", "true", "yes")


def refuse_training(run_dir: Path, cfg: Config) -> None:
    """Raise :class:`RunError` naming ``run_dir`` when :func:`restore_only` is set; otherwise nothing.

    Called where a run is about to be trained (:func:`lora_agnews.core.trainer.fit`), after every reuse and restore.
    """
    if not restore_only():
        return
    shown = Path(run_dir).resolve()
    with contextlib.suppress(ValueError):
        shown = Path("results") / shown.relative_to(paths.results_root())
    raise RunError(f"{RESTORE_ONLY} {shown} is neither in archive/{cfg.profile} nor complete in results/, and "
                   f"{RESTORE_ONLY_ENV}=1 (--restore-only) forbids training it. Pass the -p overrides the archive "
                   f"was made with, or run without --restore-only to train it (then python -m lora_agnews archive "
                   f"--profile {cfg.profile}).")


# --------------------------------------------------------------------------- provenance
def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "tokenizers", "scikit-learn", "numpy", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def git_commit() -> str:
    """HEAD of the checkout (``-dirty`` with uncommitted changes); ``unknown`` outside git."""
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


RESTORED = "restored"  # the field a restored record gets: where from, and when and where it was computed


def world_size() -> int:
    """Processes in this launch (torchrun / accelerate launch set WORLD_SIZE; 1 otherwise)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


# --------------------------------------------------------------------------- records
def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(record, Path(run_dir) / RUN_FILE)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(record: dict[str, Any]) -> bool:
    """True when the record is ``running`` and its process still runs on this host."""
    if record.get("status") != "running":
        return False
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return False
    return _pid_alive(pid)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old, new = comparable(old, new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def by_content(key: dict[str, Any]) -> dict[str, Any]:
    """``key`` with its data named by content alone: where ``data_sha256`` is kept, the path the rows were read
    from (``../shared/x`` typed in one shell, ``/work/shared/x`` resolved by the pipeline) identifies nothing more."""
    return {k: v for k, v in key.items() if k != "data"} if DATA_KEY in key else key


def comparable(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two run keys as they compare: by the data's content where both keep it, else on the configuration alone."""
    if DATA_KEY not in old:
        return old, {k: v for k, v in new.items() if k != DATA_KEY}
    return by_content(old), by_content(new)


def run_key(cfg: Config) -> dict[str, Any]:
    """What identifies a run: the configuration's key, its encoder's weights and the content of its data.

    An edited CSV trains a different model, so a run of the same parameters on other rows is
    never reused or resumed (:func:`lora_agnews.core.dataset.data_fingerprint`: cheap, cached per file). A local
    copy of a known hub checkpoint is named by its hub id (:func:`lora_agnews.core.checkpoints.model_identity`).
    """
    from .dataset import data_fingerprint

    return {**cfg.run_key(), "model_name": model_identity(cfg.model_name), DATA_KEY: data_fingerprint(cfg)}


def same_key(recorded: Any, key: dict[str, Any]) -> bool:
    """``recorded`` (a run record's key) identifies the run ``key`` describes.

    Records written before the data's fingerprint was kept carry none: they are compared on the
    configuration alone, as :data:`lora_agnews.core.config.NEW_KEY_DEFAULTS` keeps older runs usable.
    """
    if not isinstance(recorded, dict):
        return False
    old, new = comparable(recorded, key)
    return old == new


def key_tag(key: Any) -> str:
    """A short, stable name for a run key (the suffix of a set-aside run's directory)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def check(run_dir: Path, cfg: Config, overwrite: bool = False, owned: bool = False) -> str:
    """What ``train`` would do with ``run_dir``: ``new``, ``resume``, ``complete``, ``replace`` or ``aside``.

    Read-only, so errors surface before anything is touched. A directory that holds a different
    configuration's run is refused unless ``overwrite`` (its checkpoints would otherwise be resumed
    into the wrong experiment) or ``owned`` (a directory the pipeline names: the old run is moved
    aside, never deleted). Only a directory the project wrote is ever replaced.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is a file, not a directory; choose another --out.")
    record = read_record(run_dir)
    if record is None:
        return _check_unrecorded(run_dir, overwrite)
    if is_live(record):
        raise RunError(f"{run_dir} is being trained right now by process {record['pid']} (started "
                       f"{record.get('started')}); wait for it or stop it, then rerun to resume.")
    key = run_key(cfg)
    same = same_key(record.get("run_key"), key)
    if not same and owned:
        return "aside"
    if not same and not overwrite:
        diff = _differences(record.get("run_key") or {}, key)
        raise RunError(f"{run_dir} holds a run of a different configuration (differs in: {', '.join(diff[:8])}). "
                       f"Choose another --out, or pass --overwrite (CLI) / overwrite=True to replace it.")
    if overwrite and (not same or record.get("status") == "complete"):
        refuse_foreign(run_dir)
        return "replace"
    if record.get("status") == "complete" and (run_dir / METRICS_FILE).is_file():
        return "complete"
    launched = int(record.get("world_size", 1))
    if launched != world_size() and last_checkpoint(run_dir / CHECKPOINTS, clean=False):
        raise RunError(f"{run_dir} holds checkpoints of a {launched}-process launch, and this launch has "
                       f"{world_size()}: the batch schedule would not match. Resume with the same launch command "
                       f"(torchrun --nproc_per_node {launched} ...), or pass --overwrite to start over.")
    return "resume"


def _check_unrecorded(run_dir: Path, overwrite: bool) -> str:
    """A directory without a readable record: new when empty; never replaced unless training wrote all of it."""
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE) if run_dir.is_dir() else []
    if not entries:
        return "new"
    if RUN_FILE in entries:
        if not overwrite:
            raise RunError(f"{run_dir / RUN_FILE} is unreadable (not JSON); pass --overwrite to start the run "
                           f"over, or choose another --out.")
        refuse_foreign(run_dir)
        return "replace"
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise RunError(f"{run_dir} is not empty and holds no run record ({RUN_FILE}), so its files ({shown}) are not a "
                   f"run of this project and are never replaced, not even with --overwrite; choose another --out.")


def foreign_entries(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that training does not write (its atomic writes' temporaries count as its own)."""
    def own(name: str) -> bool:
        return name in RUN_ENTRIES or any(name.startswith(f".{entry}.") for entry in RUN_ENTRIES)

    return sorted(p.name for p in Path(run_dir).iterdir() if not own(p.name))


def refuse_foreign(run_dir: Path) -> None:
    """A RunError naming the files in ``run_dir`` that replacing the run would delete but the project did not write."""
    foreign = foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise RunError(f"{run_dir} holds files a training run does not write ({shown}); --overwrite would delete "
                       f"them, so it is refused: move them elsewhere, or choose another --out.")


def claim(run_dir: Path, state: str) -> str:
    """Act on :func:`check`'s answer: ``replace`` removes what training wrote (the lock stays with its
    holder), ``aside`` moves another configuration's run away (:func:`set_aside`). Returns new/resume/complete."""
    run_dir = Path(run_dir)
    if state == "replace":
        refuse_foreign(run_dir)  # again: files may have appeared while the data was checked
        for child in run_dir.iterdir():
            if child.name == LOCK_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        return "new"
    if state == "aside":
        from .paths import say

        record = read_record(run_dir) or {}
        say(f"{run_dir} held a run of another configuration; moved it to {set_aside(run_dir, record.get('run_key'))}")
        return "new"
    return state


def set_aside(run_dir: Path, key: Any) -> Path:
    """Move everything in ``run_dir`` but its lock to a new directory named by ``key`` (never one that exists).

    A pipeline-owned directory whose configuration changed keeps its earlier run this way: it may
    hold hours of training, and changing a parameter back should not cost them.
    """
    target = paths.superseded_dir(Path(run_dir), key_tag(key))
    dest, n = target, 1
    while dest.exists():
        n += 1
        dest = target.with_name(f"{target.name}-{n}")
    dest.mkdir(parents=True)
    for child in sorted(Path(run_dir).iterdir()):
        if child.name != LOCK_FILE:
            shutil.move(str(child), str(dest / child.name))
    return dest


def prepare(run_dir: Path, cfg: Config, overwrite: bool = False) -> str:
    """:func:`check` then :func:`claim` in one step (for callers that validated the config already)."""
    return claim(run_dir, check(run_dir, cfg, overwrite))


def start(run_dir: Path, cfg: Config, device: Any, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write status ``running`` with everything needed to reproduce or audit the run.

    ``facts`` (rows used of those available, pretrained or not) say what the run's numbers mean.
    """
    previous = read_record(run_dir) or {}
    record = {"status": "running", "config": cfg.to_dict(), "run_key": run_key(cfg), **(facts or {}),
              "versions": library_versions(), "git_commit": git_commit(), "device": device_description(device),
              "machine": hardware.machine(), "world_size": world_size(), "pid": os.getpid(), "host": socket.gethostname(),
              "command": " ".join(sys.argv), "started": previous.get("started", now()), "updated": now(),
              "attempts": int(previous.get("attempts", 0)) + 1, "error": None}
    write_record(run_dir, record)
    return record


def finish(run_dir: Path, record: dict[str, Any], error: BaseException | None = None) -> None:
    record = {**record, "updated": now()}
    if error is None:
        record.update(status="complete", finished=now(), error=None)
    else:
        text = str(error) or "interrupted"
        record.update(status="failed", error=f"{type(error).__name__}: {text}")
    write_record(run_dir, record)


def load_complete(run_dir: Path) -> dict[str, Any]:
    """Metrics of a complete run; a clear error for missing, running, interrupted or failed ones."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise RunError(f"{run_dir} holds no run record ({RUN_FILE}); train it first "
                       f"(python -m lora_agnews train --out {run_dir}).")
    info = inspect(run_dir)
    if info.status != "complete":
        raise RunError(f"run {run_dir} is {info.status}{': ' + info.error if info.error else ''}; it is not used. "
                       f"{_advice(info)}")
    return read_json(run_dir / METRICS_FILE)


def _advice(info: "RunInfo") -> str:
    if info.status == "running":
        return "Wait for it to finish."
    return "Rerun the same command to resume it, or pass --overwrite to start over."


# --------------------------------------------------------------------------- the lock
class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock`` for as long as one process trains into ``run_dir``.

    Two processes training into one directory would interleave checkpoints and records; the second
    is refused at once, naming the holder's pid (written into the file). The kernel drops the lock
    when its process dies, so a run killed with SIGKILL never blocks its own resume. Under torchrun
    only rank 0 takes it (:func:`lora_agnews.core.train.train`): the ranks of one launch are one run.
    Directories the lock had to create are removed again if nothing else was written into them,
    so a refused call leaves no trace.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []

    def acquire(self) -> None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunError(f"--out {self.run_dir} is a file, not a directory; choose another --out.")
        self.created = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = self._take()
        except BaseException:
            self._remove_created()
            raise

    def _take(self) -> int:
        import fcntl

        for _ in range(5):  # the file may be unlinked by a releasing holder between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").split() or ["unknown"]
                os.close(fd)
                raise RunError(f"{self.run_dir} is locked by process {holder[0]}"
                               f"{' on ' + holder[1] if len(holder) > 1 else ''}, which is training into it; wait "
                               f"for it to finish (or stop it), or choose another --out.") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
                return fd
            os.close(fd)
        raise RunError(f"could not lock {self.path}: other processes keep taking it; retry, or choose another --out.")

    def release(self) -> None:
        """Unlink, then unlock: a process that opened the old file finds it gone and retries."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for directory in self.created:  # deepest first; stops at the first that holds something
            try:
                directory.rmdir()
            except OSError:
                break

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --------------------------------------------------------------------------- scanning
@dataclass
class RunInfo:
    """One run directory as readers see it."""

    path: Path
    status: str  # complete | running | interrupted | failed | invalid
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    updated: str | None = None
    record: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def as_row(self, root: Path | None = None) -> dict[str, Any]:
        name = str(self.path.relative_to(root)) if root is not None else str(self.path)
        return {"run": name, "status": self.status, "error": self.error, "updated": self.updated,
                "seed": self.config.get("seed"), "lora_r": self.config.get("lora_r"),
                "lora_targets": self.config.get("lora_targets"), "head": self.config.get("head")}


def inspect(run_dir: Path) -> RunInfo:
    """The status of one directory, checked against what is on disk (not only what run.json says)."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        return RunInfo(run_dir, "invalid", "no run record (run.json)")
    record = read_record(run_dir)
    if record is None:
        return RunInfo(run_dir, "invalid", "run.json is not readable JSON")
    status, error = record.get("status"), record.get("error")
    if status == "complete" and not (run_dir / METRICS_FILE).is_file():
        status, error = "invalid", f"marked complete but {METRICS_FILE} is missing"
    elif status == "complete":
        try:
            read_json(run_dir / METRICS_FILE)
        except ValueError:
            status, error = "invalid", f"{METRICS_FILE} is not readable JSON"
    elif status == "running" and not is_live(record) and record.get("host") == socket.gethostname() \
            and record.get("pid") != os.getpid():
        status, error = "interrupted", f"process {record.get('pid')} stopped before finishing"
    elif status not in STATUSES:
        status, error = "invalid", f"unknown status {status!r}"
    return RunInfo(run_dir, status, error, record.get("config") or {}, record.get("updated"), record)


def scan(root: Path) -> list[RunInfo]:
    """Every run directory under ``root`` (any depth), sorted by path, with its status."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted({p.parent for p in root.rglob(RUN_FILE)})
    parts = {d: d.relative_to(root).parts for d in found}  # hidden: temporaries and runs kept aside
    return [inspect(d) for d in found if CHECKPOINTS not in parts[d] and not any(p.startswith(".") for p in parts[d])]


def complete_runs(root: Path) -> list[Path]:
    """The run directories under ``root`` whose numbers may be used."""
    return [info.path for info in scan(root) if info.complete]


# --------------------------------------------------------------------------- checkpoints
def checkpoint_is_complete(path: Path) -> bool:
    return (Path(path) / CHECKPOINT_COMPLETE_MARKER).is_file()


def last_checkpoint(checkpoint_dir: Path, clean: bool = True) -> str | None:
    """The newest checkpoint the Trainer finished writing; cut-off ones are removed (``clean``).

    The Trainer writes a checkpoint in place and ``trainer_state.json`` last, so a process
    killed mid-save leaves a directory that would crash or corrupt the resume.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return None
    found = []
    for child in checkpoint_dir.iterdir():
        name = child.name
        if not child.is_dir() or not name.startswith(PREFIX_CHECKPOINT_DIR + "-"):
            continue
        step = name.rsplit("-", 1)[-1]
        if not step.isdigit():
            continue
        if checkpoint_is_complete(child):
            found.append((int(step), child))
        elif clean:
            shutil.rmtree(child, ignore_errors=True)
    return str(max(found)[1]) if found else None


# --------------------------------------------------------------------------- atomic artifacts
def save_arrays(path: Path, **arrays: Any) -> Path:
    """``np.savez_compressed`` through a temporary file and a rename."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return _atomic_write_bytes(buffer.getvalue(), Path(path))


def _share(directory: Path) -> None:
    """Usual permissions (temp files are created private): an artifact is meant to be read by others."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``target`` by renames.

    A crash while writing leaves the old directory untouched (and no half-written one).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        _share(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def invalidate_results(profile: str, command: str) -> None:
    """Remove the profile's stamp before ``command`` trains runs or rewrites results the book and report read.

    Run outside the pipeline (``ablate``, ``seeds``, ``quantization``), such a command would otherwise
    leave a stamp vouching for notebooks whose numbers no longer match the results beside them.
    """

    stamp = paths.stamp_path(profile)
    if stamp.is_file():
        stamp.unlink()
        say(f"{command} changes results/{profile}: removed its {paths.STAMP} stamp, so the book and report refuse them "
            f"until `python -m lora_agnews run --profile {profile}` re-executes the notebooks (complete runs are reused)")
