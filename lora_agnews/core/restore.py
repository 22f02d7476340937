"""Restoring runs from the archive (:mod:`lora_agnews.core.archive`) into ``results/<profile>/``, and what a sitting
restored.

A restore copies an entry into an empty run directory, its record last, so an interrupted copy leaves no record
and nothing half-copied is ever read as a run. Torch-free, as the archive is (the engines' driver installs
entries without loading a model). May import ``paths``, ``config``, ``runs`` and ``archive``; ``adapter`` only
inside the one function that rewrites an adapter's record.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import paths, runs
from .archive import (ADAPTER, ENTRY_FILE, entry_dir, local_paths, machine_line, read_entry, roundtrip, sources,
                      stale_entries)
from .config import Config
from .paths import read_json, say, write_json


def restore_entry(entry: Path, run_dir: Path, record_file: str, current: dict[str, Any],
                  config: dict[str, Any] | None = None) -> None:
    """Copy ``entry``'s files into the empty ``run_dir``, its record last. The record (and, given ``config``, the
    adapter's configuration) take the key and configuration of the run asked for, ``current`` (the same
    computation: their identities are equal), so paths name this checkout's files, and the archived key is kept
    beside them as ``runs.RESTORED``'s ``key``."""
    # Imported here, not at the top: adapter imports torch (1.4 s measured on this 2-core machine), which the
    # engines' driver, installing entries, never loads.
    from .adapter import CONFIG_FILE

    entry, run_dir, current = Path(entry), Path(run_dir), roundtrip(current)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = read_json(entry / ENTRY_FILE)
    for name in info["files"]:
        if name == record_file or name.startswith(f"{ADAPTER}/"):
            continue
        shutil.copy2(entry / name, run_dir / name)
    if (entry / ADAPTER).is_dir():
        if (run_dir / ADAPTER).exists():
            shutil.rmtree(run_dir / ADAPTER)
        shutil.copytree(entry / ADAPTER, run_dir / ADAPTER)
        if config is not None and (run_dir / ADAPTER / CONFIG_FILE).is_file():
            write_json({**read_json(run_dir / ADAPTER / CONFIG_FILE), "config": config}, run_dir / ADAPTER / CONFIG_FILE)
    for name in (n for n in info["files"] if n.endswith(".json") and n != record_file):  # this checkout's paths again
        paths.atomic_write_text(local_paths((run_dir / name).read_text(encoding="utf-8")), run_dir / name)
    record = read_entry(entry, record_file)
    archived_key = record.get("run_key", record.get("key"))
    record.update(current)
    record[runs.RESTORED] = {"from": str(entry.relative_to(entry.parents[2])), "at": runs.now(),
                             "computed": info["computed"], "adapter": bool(info["adapter"]), "key": archived_key}
    write_json(record, run_dir / record_file)
    say(f"{run_dir.name}: restored from the archive ({record[runs.RESTORED]['from']}), computed "
        f"{machine_line(info['computed'])}")


def restore_run(run_dir: Path, cfg: Config) -> bool:
    """Copy the archived run of ``cfg`` into the empty ``run_dir`` (pipeline-owned, under results/<profile>/runs).

    True when restored; False when the archive holds no entry of this identity or ``run_dir`` is not one the
    pipeline names (a user's ``--out`` is trained, never filled from the archive). The record is written last,
    with ``runs.RESTORED`` saying where it came from.
    """
    entry = restorable(run_dir, cfg)
    if entry is None:
        return False
    restore_entry(entry, run_dir, runs.RUN_FILE, {"run_key": runs.run_key(cfg), "config": cfg.to_dict()}, cfg.to_dict())
    return True


def restorable(run_dir: Path, cfg: Config) -> Path | None:
    """The entry :func:`restore_run` would copy into ``run_dir``, or None (read-only)."""
    rel = _under_runs(run_dir, cfg.profile)
    return None if rel is None else entry_dir(cfg.profile, runs.run_key(cfg), rel)


def _under_runs(run_dir: Path, profile: str) -> str | None:
    """``run_dir`` relative to results/<profile> when it is under results/<profile>/runs (the pipeline's), else None."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_relative_to(paths.runs_dir(profile).resolve()):
        return None
    return str(run_dir.relative_to(paths.results_dir(profile).resolve()))


def restore_study(run_dir: Path, profile: str, current: dict[str, Any], record_file: str) -> bool:
    """Copy the archived merging-study model whose record holds ``current["key"]`` into ``run_dir`` (only under
    results/<profile>/runs); its record takes ``current`` (key and configuration). True when restored."""
    rel = _under_runs(run_dir, profile)
    entry = None if rel is None else entry_dir(profile, current["key"], rel)
    if entry is None:
        return False
    restore_entry(entry, run_dir, record_file, current)
    return True


def sitting(profile: str, since: float) -> dict[str, Any]:
    """Runs of ``results/<profile>`` trained since ``since`` (a ``time.time()``), every run there that was restored
    from the archive (whenever: a later pipeline run reuses it, and the stamp must still say it was computed
    elsewhere) with where it was computed, and the archive's stale entries: what the one line and the stamp say."""
    restored, trained, computed = [], [], []
    for source in sources(profile):
        record_path = source.path / source.record_file
        record = read_json(record_path)
        if runs.RESTORED in record:
            restored.append(source.rel)
            computed.append(machine_line(record[runs.RESTORED]["computed"]))
        elif record_path.stat().st_mtime >= since:
            trained.append(source.rel)
    return {"restored": len(restored), "trained": len(trained), "restored_runs": restored,
            "computed": sorted(set(computed)), "stale": stale_entries(profile)}


def sitting_line(profile: str, summary: dict[str, Any]) -> str:
    """The pipeline's one line per profile: how many runs were restored and how many trained."""
    line = (f"archive: profile {profile}: {summary['restored']} run(s) restored from {paths.archive_dir(profile)}, "
            f"{summary['trained']} trained here")
    if summary["computed"]:
        line += f" (restored runs computed {'; '.join(summary['computed'])})"
    if summary["stale"]:
        line += f"; {len(summary['stale'])} stale entr{'y' if len(summary['stale']) == 1 else 'ies'} not used"
    return line
