"""The Ray engine: each model still to compute is a Ray task with stated resources on a Ray cluster.

``run --engine ray`` starts a local cluster in the driver's process (``--workers N`` tasks at once, each with
``--cpus-per-run`` CPUs and as many torch threads); ``--address ADDR`` joins a running one (``ray start --head``;
on Slurm, the sbatch script of book/guide/cluster.md). Where the cluster has GPUs each task takes one GPU. A task
gets the model as plain data and returns its archive entry as bytes (:mod:`lora_agnews.engines.work`), so workers
need no shared file system; Ray's own retries are off (``max_retries=0``), the driver retries and reports. Each
task runs in a fresh worker process (``max_calls=1``): a run's memory and threads are its own, as in a local run.
"""

from __future__ import annotations

import os
from typing import Any

from ..core import paths
from .driver import EngineError

INSTALL_HINT = "pip install -e '.[ray]'"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EngineError(f"--engine ray needs Ray, which is not installed here: {INSTALL_HINT} (or use --engine "
                          f"local).") from None
    return ray


def _compute(job: dict[str, Any], threads: int) -> dict[str, Any]:
    """The task's body, in the worker's process."""
    from .work import compute

    return compute(job, threads)


class RayBackend:
    """Submits models as Ray tasks and waits on them; the cluster is the one at ``address`` or a local one."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_run: int = 1):
        if cpus_per_run < 1:
            raise EngineError(f"--cpus-per-run {cpus_per_run} must be 1 or more.")
        if workers is not None and workers < 1:
            raise EngineError(f"--workers {workers} must be 1 or more (or leave it out: one per GPU, else per "
                              f"--cpus-per-run CPUs of the cluster).")
        ray = self.ray = _ray()
        # this checkout's package on the workers where it is at the same path (a local cluster, a shared home)
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH")])),
                            "TOKENIZERS_PARALLELISM": "false", "LORA_AGNEWS_PROGRESS": "0"}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=(workers or os.cpu_count() or 1) * cpus_per_run, include_dashboard=False,
                     runtime_env=env, log_to_driver=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.slots = workers or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // cpus_per_run))
        self.cpus = cpus_per_run
        self.task = ray.remote(num_cpus=cpus_per_run, num_gpus=1 if gpus else 0, max_retries=0, max_calls=1)(_compute)

    def submit(self, job: dict[str, Any]) -> Any:
        return self.task.remote(job, self.cpus)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any] | None, str | None]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for handle in ready:
            try:
                out.append((handle, self.ray.get(handle), None))
            except self.ray.exceptions.RayError as exc:  # the model's own error, or its worker died
                out.append((handle, None, describe(exc)))
        return out

    def cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            self.ray.cancel(handle, force=True)

    def close(self) -> None:
        self.ray.shutdown()


def describe(exc: BaseException) -> str:
    """One line for a failed task: the model's own exception where it raised one, else what happened to its worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'the worker stopped'}"
