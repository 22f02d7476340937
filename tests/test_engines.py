"""The engines' driver (lora_agnews.engines): retries, the failure report, one driver per results tree, resuming,
bad input. Fast: the in-process backend with a stand-in worker; real Ray (a local cluster) is the slow tier's,
here and in test_pipeline.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lora_agnews import cli, engines, plan
from lora_agnews.engines.inline import InlineBackend


@pytest.fixture
def smoke_jobs() -> list[Any]:
    """The first three models of the smoke plan (main, multi-label, a grid run), in this test's results tree."""
    return [p.job for p in plan.make("smoke").items[:3]]


def fake_plan(monkeypatch: pytest.MonkeyPatch, jobs: list[Any], installed: list[str]) -> None:
    """plan.make lists ``jobs`` less those installed; install records the path instead of writing."""
    cfg = jobs[0].cfg

    def make(profile: str, overrides: Any) -> plan.Plan:
        return plan.Plan(profile, cfg, [plan.Planned(j, plan.TO_COMPUTE, 1.0) for j in jobs if j.rel not in installed])

    monkeypatch.setattr(plan, "make", make)
    monkeypatch.setattr("lora_agnews.engines.install.install", lambda job, returned: installed.append(job.rel))


def test_an_entry_of_another_identity_is_refused_as_a_failed_attempt(smoke_jobs) -> None:
    from lora_agnews.engines import install

    with pytest.raises(install.InstallError, match="another identity"):
        install.install(smoke_jobs[0], {"id": "0123456789-abcdef", "files": {}})
    assert not smoke_jobs[0].path.exists()


def test_a_failing_model_is_retried_then_reported_while_the_others_finish(monkeypatch, smoke_jobs) -> None:
    installed: list[str] = []
    fake_plan(monkeypatch, smoke_jobs, installed)
    tries: dict[str, int] = {}

    def work(job: dict[str, Any], threads: int) -> dict[str, Any]:
        tries[job["rel"]] = tries.get(job["rel"], 0) + 1
        if job["rel"] == "runs/multilabel":
            raise ValueError("the data went away")
        if job["rel"] == "runs/main" and tries[job["rel"]] == 1:
            raise RuntimeError("worker lost")
        return {"id": "x", "files": {}}

    with pytest.raises(engines.EngineError) as exc:
        engines.compute("smoke", {}, InlineBackend(work=work), retries=2)
    assert installed == [smoke_jobs[2].rel, "runs/main"] and tries == {"runs/main": 2, "runs/multilabel": 3,
                                                                        smoke_jobs[2].rel: 1}
    assert "1 model(s) failed after 3 attempt(s)" in str(exc.value)
    assert "runs/multilabel: ValueError: the data went away" in str(exc.value)


def test_a_second_driver_on_one_results_tree_is_refused() -> None:
    with engines.driver_lock("smoke"):
        with pytest.raises(engines.EngineError, match=rf"another driver \(process {os.getpid()}"):
            with engines.driver_lock("smoke"):
                pass
    with engines.driver_lock("smoke"):  # released with its holder
        pass


def test_a_driver_stopped_midway_keeps_what_it_installed_and_the_next_computes_the_rest(monkeypatch,
                                                                                         smoke_jobs) -> None:
    installed: list[str] = []
    fake_plan(monkeypatch, smoke_jobs, installed)
    done: list[str] = []

    def work(job: dict[str, Any], threads: int) -> dict[str, Any]:
        if len(done) == 1:
            raise KeyboardInterrupt  # the driver killed while its second model runs
        done.append(job["rel"])
        return {"id": "x", "files": {}}

    with pytest.raises(KeyboardInterrupt):
        engines.compute("smoke", {}, InlineBackend(work=work))
    assert installed == ["runs/main"]
    done.append("again")
    outcome = engines.compute("smoke", {}, InlineBackend(work=lambda job, threads: {"id": "x", "files": {}}))
    assert outcome.computed == [j.rel for j in smoke_jobs[1:]] and installed == [j.rel for j in smoke_jobs]


def test_bad_engine_input_is_one_line(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(engines.EngineError, match="--retries -1 is negative"):
        engines.compute("smoke", {}, InlineBackend(), retries=-1)
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # Ray not installed
    assert cli.main(["run", "--profile", "smoke", "--engine", "ray"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert cli.main(["run", "--profile", "smoke", "--engine", "ray", "--restore-only"]) == 2
    assert "--restore-only trains nothing" in capsys.readouterr().err


def test_a_worker_computes_a_model_as_an_entry_the_driver_restores(smoke_jobs, tmp_path: Path) -> None:
    """One real model through work.compute and install: archived (without the grid run's adapter, as `archive`
    keeps it), and restored into results/ with its adapter and a record that names the computation."""
    from lora_agnews.core import paths, runs
    from lora_agnews.core.paths import read_json
    from lora_agnews.engines import install, work

    job = next(j for j in plan.make("smoke").items if j.job.study == "ablation").job
    returned = work.compute(work.spec(job, job.cfg), threads=1)
    assert "adapter/adapter_model.safetensors" in returned["files"]
    install.install(job, returned)
    entry = paths.archive_dir("smoke") / "entries" / returned["id"]
    assert not (entry / "adapter").exists() and (job.path / "adapter" / "adapter_model.safetensors").is_file()
    record = runs.read_record(job.path)
    assert record["status"] == "complete" and runs.same_key(record["run_key"], job.key()) and "restored" in record
    assert plan.make("smoke").items[[p.job.rel for p in plan.make("smoke").items].index(job.rel)].status == "complete"
    assert read_json(job.path / "metrics.json")["accuracy"] == read_json(entry / "metrics.json")["accuracy"]


def killed_then_computed(job: dict[str, Any], threads: int) -> dict[str, Any]:
    """A Ray task body: the first attempt's worker process dies three seconds into the real training, the next
    attempt computes; runs/multilabel always raises."""
    import threading

    from lora_agnews.engines.work import compute

    if job["rel"] == "runs/multilabel":
        raise ValueError("the data went away")
    marker = Path(os.environ["ENGINE_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("killed once")
        threading.Timer(3.0, lambda: os._exit(9)).start()
    return compute(job, threads)


@pytest.mark.slow
def test_on_a_local_ray_cluster_a_killed_worker_is_retried_and_a_raising_model_reported(monkeypatch, smoke_jobs,
                                                                                         tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install -e '.[ray]'")
    import sys

    from ray import cloudpickle

    from lora_agnews.core import runs
    from lora_agnews.engines.ray_engine import RayBackend

    jobs = smoke_jobs[:2]  # the main run and the multi-label run
    monkeypatch.setattr(plan, "make", lambda profile, overrides: plan.Plan(profile, jobs[0].cfg, [
        plan.Planned(j, plan.TO_COMPUTE, 1.0) for j in jobs if runs.read_record(j.path) is None]))
    monkeypatch.setenv("ENGINE_TEST_MARKER", str(tmp_path / "killed"))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the task body travels with the task
    backend = RayBackend(workers=2)
    try:
        backend.task = ray.remote(num_cpus=1, max_retries=0, max_calls=1)(killed_then_computed)
        with pytest.raises(engines.EngineError) as exc:
            engines.compute("smoke", {}, backend, retries=1)
    finally:
        backend.close()
    assert (tmp_path / "killed").is_file() and runs.read_record(jobs[0].path)["status"] == "complete"
    assert "1 model(s) failed after 2 attempt(s) each (1 computed and kept)" in str(exc.value)
    assert "runs/multilabel: ValueError: the data went away" in str(exc.value)
