"""The in-process engine: the driver's models computed one after the other in this process (tests, debugging).

Same interface as :class:`lora_agnews.engines.ray_engine.RayBackend`, no dependency: the driver's retries, count,
lock and installation are tested with it in the fast tier, and Ray's own behaviour in the slow one.
"""

from __future__ import annotations

from typing import Any, Callable

from .work import compute


class InlineBackend:
    """Computes each submitted model when waited on, in this process, with ``threads`` torch threads."""

    name = "inline"
    slots = 1

    def __init__(self, threads: int = 1, work: Callable[[dict[str, Any], int], dict[str, Any]] = compute):
        self.threads, self.work, self.pending = threads, work, {}
        self.count = 0

    def submit(self, job: dict[str, Any]) -> int:
        self.count += 1
        self.pending[self.count] = job
        return self.count

    def wait(self, handles: list[int], timeout: float) -> list[tuple[int, dict[str, Any] | None, str | None]]:
        handle = handles[0]
        job = self.pending.pop(handle)
        try:
            return [(handle, self.work(job, self.threads), None)]
        except Exception as exc:  # what a worker raises is the model's failure, reported by the driver
            return [(handle, None, f"{type(exc).__name__}: {exc}")]

    def cancel(self, handles: list[int]) -> None:
        for handle in handles:
            self.pending.pop(handle, None)
