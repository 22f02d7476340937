"""The plan (lora_agnews.plan): every model a profile's notebooks need, from the studies' own lists.

That the plan names exactly what the notebooks compute is checked against the smoke pipeline in test_pipeline.py
(test_the_plan_names_exactly_the_models_the_notebooks_computed); here, every profile's plan builds offline, holds
each study's models, and the demo plan restores every model from the committed archive the notebooks wrote.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lora_agnews import cli, plan
from lora_agnews.core import config, hardware, paths
from lora_agnews.studies import experiments, merging_study, quantize_study


def expected(cfg: config.Config) -> Counter:
    """Models per study as the studies list them (the seed study without its grid settings)."""
    tasks = len(merging_study.profile_tasks(cfg))
    return Counter({"main": 1, "multilabel": 1, "ablation": len(experiments.ablation_grid(cfg)),
                    "seeds": 2 * cfg.n_seeds, "merging": 2 * tasks + 1,
                    "quantization": len(quantize_study.study_configs(cfg))})


@pytest.mark.parametrize("profile", paths.available_profiles())
def test_every_profile_s_plan_builds_offline_with_each_study_s_models(profile: str) -> None:
    made = plan.make(profile)
    cfg = config.load(profile)
    assert Counter(p.job.study for p in made.items) == expected(cfg)
    assert bool(made.pending) == bool(cfg.study_top)  # the grid's picks wait for the grid
    statuses = Counter(p.status.split(" as ")[0] for p in made.items)
    assert set(statuses) <= {"compute", "same", "over budget"}, statuses  # an empty results tree and archive


def test_the_demo_plan_restores_every_model_from_the_archive_its_notebooks_wrote(monkeypatch) -> None:
    monkeypatch.setenv("LORA_AGNEWS_ARCHIVE", str(paths.ROOT / "archive"))
    made = plan.make("demo")
    assert not made.to_compute(), plan.lines(made)
    assert plan.select(made, ["restorable"]) and made.seconds_to_compute() == 0
    if hardware.machine()["cpu_kind"] == "AMX" and hardware.machine()["gpu"] == "none":  # the archive's machine kind
        assert made.throughput is not None  # measured from the archived runs of the demo's encoder


def test_plan_command_prints_json_and_names_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--profile", "smoke", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models"][0] == {**data["models"][0], "study": "main", "path": "runs/main", "status": "compute"}
    assert cli.main(["plan", "--profile", "smoke", "-p", "lora_rank", "4"]) == 2
    assert "lora_rank" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("profile", ["cpu", "base"])
def test_the_plans_of_the_archived_profiles_restore_every_archived_model(profile: str, shared_data, monkeypatch) -> None:
    """With the rows the archive was computed on, the plan finds every archived model, the base profile's grid picks
    (decided on the archived grid's validation accuracy) included, and nothing to compute."""
    monkeypatch.setenv("LORA_AGNEWS_ARCHIVE", str(paths.ROOT / "archive"))
    made = plan.make(profile, {"data": str(shared_data)})
    entries = json.loads((paths.ROOT / "archive" / profile / "MANIFEST.json").read_text())["entries"]
    # the merged scores are computed by notebook 05 from the planned task adapters (and restored with them), not planned
    trained = {e: i for e, i in entries.items() if i["path"] != "runs/merging/merged"}
    assert not made.to_compute() and not made.pending
    assert made.count("restorable") == len(trained)
