"""The seed study recomputed from the runs an archive keeps, so the findings and ``reproduce`` state the intervals
this version computes from the archived predictions, not the ones a kept ``statistics.json`` was written with.

May import: the core, :mod:`.comparison` and :mod:`.experiments`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core import runs
from ..core.archive import archived_runs, read_entry
from ..core.config import Config, from_dict
from .comparison import PREDICTIONS_FILE, run_arm
from .experiments import seed_run_config, seed_statistics

# What seed_statistics computes of a setting; the rest of a kept entry is what its runs recorded
COMPUTED = ("accuracy", "mean", "std", "bootstrap_ci", "pooled_accuracy", "vs_baseline", "seeds", "name", "role")


def archived_statistics(profile: str, kept: dict[str, Any]) -> dict[str, Any] | None:
    """The seed study recomputed from its runs archived in ``archive/<profile>`` as :func:`.experiments.run_seeds` computes it,
    with what ``kept`` (the statistics.json the archive keeps) recorded of each setting besides (configuration,
    parameters, seconds); None while a run of it is not archived.

    The findings and ``reproduce`` read this rather than the kept file, so the intervals they state are the ones
    this version computes from the same predictions. A kept result that names no setting's configuration and
    seeds gives None too: there is nothing to find its runs by.
    """
    if not all("config" in s and s.get("seeds") for s in kept.get("settings", [])):
        return None
    found = _archived_runs_by_config(profile)
    arms = []
    for setting in kept["settings"]:
        cfg, seeds = from_dict(setting["config"]), list(setting["seeds"])
        entries = [found.get(_config_key(seed_run_config(cfg, seed))) for seed in seeds]
        if not all(entries):
            return None
        dirs = [_prefer(e, f"runs/seeds/{setting['name']}/seed{seed}") for e, seed in zip(entries, seeds)]
        arms.append(run_arm(setting["name"], dirs, seeds))
    facts = [{k: v for k, v in s.items() if k not in COMPUTED} for s in kept["settings"]]
    return seed_statistics([s["role"] for s in kept["settings"]], arms, facts,
                           int(kept["settings"][0]["config"]["seed"]), profile)


def _archived_runs_by_config(profile: str) -> dict[str, dict[str, Path]]:
    """Archived runs with saved test predictions by their configuration's key, each with the paths it was
    archived from (the same training can be archived from several: the main run is the chosen one's first seed)."""
    found: dict[str, dict[str, Path]] = {}
    for rel, entry in archived_runs(profile).items():
        if (entry / runs.RUN_FILE).is_file() and (entry / PREDICTIONS_FILE).is_file():
            record = read_entry(entry, runs.RUN_FILE)
            if "config" in record:
                found.setdefault(_config_key(from_dict(record["config"])), {})[rel] = entry
    return found


def _config_key(cfg: Config) -> str:
    return json.dumps(cfg.run_key(), sort_keys=True, default=str)


def _prefer(entries: dict[str, Path], rel: str) -> Path:
    """The entry archived from the study's own path, else from the main run, else the first in path order: the
    run :func:`.experiments.reusable_run` reads (the same training, whichever path it was archived from)."""
    return entries.get(rel) or entries.get("runs/main") or entries[sorted(entries)[0]]
