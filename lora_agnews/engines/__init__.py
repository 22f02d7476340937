"""Engines that compute a profile's runs elsewhere: the plan's models as tasks, their results as archive entries.

``run --engine local`` (the default) is the pipeline as it always was: each notebook trains what it needs. Other
engines compute every model the plan lists as still to compute first (:mod:`.driver`), on workers that return
archive entries (:mod:`.work`) which the driver installs (:mod:`.install`); then the notebooks render with every
run reused. ``ray`` (:mod:`.ray_engine`) needs the optional extra: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

from typing import Any

from .driver import EngineError, Outcome, compute, driver_lock

ENGINES = ("local", "ray")


def backend(engine: str, address: str | None = None, workers: int | None = None, cpus_per_run: int = 1) -> Any:
    """The backend named ``engine`` (not ``local``, which computes inside the notebooks)."""
    if engine == "ray":
        from .ray_engine import RayBackend

        return RayBackend(address, workers, cpus_per_run)
    if engine == "inline":
        from .inline import InlineBackend

        return InlineBackend(cpus_per_run)
    raise EngineError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}.")


__all__ = ["ENGINES", "EngineError", "Outcome", "backend", "compute", "driver_lock"]
