"""The driver: computes a profile's plan on an engine, with retries, a live count, and one driver per results tree.

It takes the plan's models still to compute (:mod:`lora_agnews.plan`), hands them to the engine's workers as
they free up, and installs each returned entry at once (:mod:`lora_agnews.engines.install`), so a killed driver
loses only the models in flight: the same command again plans what is left. A model that fails is submitted
again up to ``retries`` times while the others go on; the driver ends by listing what failed and why. The seed
study's grid settings (``study_top``) are known once the grid is in, so the driver plans again after each round
until nothing is left to compute.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from ..core import paths, runs
from ..core.paths import say


class EngineError(paths.ProjectError):
    """The engine could not compute the plan as asked; the message says what failed and what to do."""


class Backend(Protocol):
    """Where the models run: :class:`lora_agnews.engines.ray_engine.RayBackend`, or the in-process one of the tests."""

    name: str
    slots: int  # models computed at once

    def submit(self, job: dict[str, Any]) -> Any: ...

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any] | None, str | None]]: ...

    def cancel(self, handles: list[Any]) -> None: ...


@dataclass
class Outcome:
    """What a driver did: the models installed, and those that failed every attempt with each attempt's error."""

    computed: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def driver_lock(profile: str) -> Iterator[None]:
    """Hold ``results/<profile>/.lock`` while driving: a second driver on the same results tree is refused at once,
    as a second training into one run directory is (the lock goes with its process, so a killed driver never
    blocks the next)."""
    root = paths.results_dir(profile)
    lock = runs.RunLock(root)
    try:
        lock.acquire()
    except runs.RunError:
        holder = (root / runs.LOCK_FILE).read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        raise EngineError(f"results/{profile} is being computed by another driver (process {holder}); wait for it to "
                          f"finish or stop it, then rerun: every model it finished is kept.") from None
    try:
        yield
    finally:
        lock.release()


def compute(profile: str, overrides: dict[str, Any], backend: Backend, retries: int = 1) -> Outcome:
    """Compute every model of the plan that is not complete or restorable; an :class:`EngineError` listing the
    failures when some model failed ``1 + retries`` times (the others are installed and kept)."""
    from .. import plan as plan_mod

    if retries < 0:
        raise EngineError(f"--retries {retries} is negative; give 0 (no retry) or more.")
    outcome, started = Outcome(), time.perf_counter()
    while True:
        plan = plan_mod.make(profile, overrides)
        todo = plan.to_compute()
        if not todo:
            break
        again = sorted({p.job.rel for p in todo} & set(outcome.computed))
        if again:  # installed, yet not found: the notebooks would train it again
            raise EngineError(f"{again[0]} was computed and installed, but the plan still lists it to compute; "
                              f"results/{profile} or archive/{profile} changed meanwhile? Rerun the same command.")
        say(f"engine {backend.name}: {len(todo)} model(s) of profile {profile} to compute on {backend.slots} worker(s) "
            f"({plan.count('complete')} complete, {plan.count('restorable')} restorable)")
        before = len(outcome.computed)
        _round(plan, todo, backend, retries, outcome)
        if outcome.failed or len(outcome.computed) == before:
            break
    outcome.seconds = time.perf_counter() - started
    if outcome.failed:
        raise EngineError(failure_report(outcome, retries))
    say(f"engine {backend.name}: {len(outcome.computed)} model(s) computed in {outcome.seconds:.0f} s; every other "
        f"model is complete or restorable")
    return outcome


def failure_report(outcome: Outcome, retries: int) -> str:
    lines = [f"{len(outcome.failed)} model(s) failed after {1 + retries} attempt(s) each ({len(outcome.computed)} "
             f"computed and kept); rerun the same command to compute only what is left:"]
    lines += [f"  {rel}: {errors[-1]}" for rel, errors in sorted(outcome.failed.items())]
    return "\n".join(lines)


def _round(plan: Any, todo: list[Any], backend: Backend, retries: int, outcome: Outcome) -> None:
    """Compute ``todo`` (planned models) on ``backend``: at most ``backend.slots`` at once, failures retried."""
    from .work import spec

    queue = [p.job for p in todo]
    attempts: dict[str, list[str]] = {}
    running: dict[Any, Any] = {}
    progress = Progress(backend, [p.seconds for p in todo])
    try:
        while queue or running:
            while queue and len(running) < backend.slots:
                job = queue.pop(0)
                running[backend.submit(spec(job, plan.cfg))] = job
                progress.show(running, len(queue), outcome)
            for handle, returned, error in backend.wait(list(running), timeout=5.0):
                job = running.pop(handle)
                if error is None:
                    error = _installed(job, returned)
                if error is None:
                    outcome.computed.append(job.rel)
                    progress.finished()
                    continue
                errors = attempts.setdefault(job.rel, [])
                errors.append(error)
                if len(errors) <= retries:
                    say(f"engine {backend.name}: {job.rel} failed ({error}); retrying (attempt {len(errors) + 1} of "
                        f"{1 + retries})")
                    queue.append(job)
                else:
                    outcome.failed[job.rel] = errors
                    say(f"engine {backend.name}: {job.rel} failed {len(errors)} time(s), last: {error}")
                progress.show(running, len(queue), outcome)
    except BaseException:
        backend.cancel(list(running))
        say(f"engine {backend.name}: stopped; {len(outcome.computed)} model(s) computed and kept, "
            f"{len(running)} in flight dropped; rerun the same command to compute only what is left")
        raise


def _installed(job: Any, returned: dict[str, Any]) -> str | None:
    """Install a returned model; the reason it could not be, as a failed attempt's error (None: installed)."""
    from .install import install

    try:
        install(job, returned)
    except paths.ProjectError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class Progress:
    """The live count: models done, running, failed and left, and the time left at the rate seen so far."""

    def __init__(self, backend: Backend, estimates: list[float | None]):
        self.backend, self.started, self.done = backend, time.perf_counter(), 0
        self.total = len(estimates)
        known = [e for e in estimates if e is not None]
        self.estimate = sum(known) / len(known) if known and len(known) == len(estimates) else None
        self.last = ""

    def finished(self) -> None:
        self.done += 1

    def eta(self, running: int, left: int) -> str:
        """Seconds left: the mean wall time per finished model (before the first: the plan's estimate) times the
        models not finished, over the workers."""
        from ..plan import duration

        elapsed = time.perf_counter() - self.started
        per_model = elapsed * self.backend.slots / self.done if self.done else self.estimate
        if per_model is None:
            return "time left unknown until a model finishes"
        return f"about {duration(per_model * (running + left) / self.backend.slots)} left"

    def show(self, running: dict[Any, Any], queued: int, outcome: Outcome) -> None:
        line = (f"engine {self.backend.name}: {self.done} done, {len(running)} running, {len(outcome.failed)} failed, "
                f"{queued} left; {self.eta(len(running), queued)}")
        if line != self.last:
            say(line)
            self.last = line

