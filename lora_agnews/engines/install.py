"""Bringing a worker's model back: its entry into ``archive/<profile>``, and into ``results/<profile>`` as a restore.

The entry arrives as bytes (:func:`lora_agnews.engines.work.compute`). It is written to a staging directory, added
to the archive (adapter kept only where the archive keeps one, so ``git add archive/<profile>`` publishes what
``archive`` would have written), then copied into the model's directory with its adapter, record last, under the
directory's lock, exactly as the notebooks restore an archived run. The notebooks then find every model complete
and the audit re-scores each one that has an adapter, as after a local computation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..core import paths, runs
from ..core.paths import say


class InstallError(paths.ProjectError):
    """A returned entry is not the model the plan asked for; nothing of it is written."""


def install(job: Any, returned: dict[str, Any]) -> None:
    """Add ``returned`` (a worker's entry of the plan's ``job``) to the archive and restore it into ``job.path``."""
    from ..core.archive import add_entry, entry_id

    profile = job.cfg.profile
    if returned["id"] != entry_id(job.key(), job.rel):
        raise InstallError(f"the worker computed {job.rel} with another identity than this checkout's (entry "
                           f"{returned['id']}, expected {entry_id(job.key(), job.rel)}): its data or its version of "
                           f"lora_agnews differ; give every node the same commit and data.")
    with tempfile.TemporaryDirectory(prefix="lora-agnews-entry-") as tmp:
        entry = Path(tmp) / profile / "entries" / returned["id"]
        for name, data in returned["files"].items():
            (entry / name).parent.mkdir(parents=True, exist_ok=True)
            (entry / name).write_bytes(data)
        add_entry(profile, entry)
        _restore(job, entry)


def _restore(job: Any, entry: Path) -> None:
    """The entry into the model's directory, unless a complete model of its identity is there already."""
    from ..core.restore import restore_entry

    with runs.RunLock(job.path):
        if not _claimed(job):
            say(f"{job.rel}: already complete here; the worker's copy is kept in the archive only")
            return
        config = job.cfg.to_dict() if job.kind == "run" else None
        restore_entry(entry, job.path, job.record_file, job.current(), config)


def _claimed(job: Any) -> bool:
    """Make ``job.path`` ready to take the model (another configuration's run moved aside, never deleted); False
    when it holds this model complete already."""
    from ..plan import complete_here

    if job.kind == "run":
        state = runs.check(job.path, job.cfg, owned=True)
        if state == "complete":
            return False
        runs.claim(job.path, "replace" if state == "resume" else state)  # an interrupted local attempt's files
        return True
    if complete_here(job) is not None:
        return False
    present = [p for p in job.path.iterdir() if p.name != runs.LOCK_FILE] if job.path.is_dir() else []
    if present:
        record = job.path / job.record_file
        key = paths.read_json(record).get("key") if record.is_file() else None
        say(f"{job.path} held a model of another configuration; moved it to {runs.set_aside(job.path, key)}")
    return True
