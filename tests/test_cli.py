"""Command line: the parameter count users quote, one-line errors with exit 2, budget table, train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_agnews import cli
from lora_agnews.core import paths

STARTING_POINT = ["-p", "model_name", "roberta-base", "-p", "init", "random", "-p", "lora_r", "7",
                  "-p", "lora_alpha", "32", "-p", "lora_targets", "query,key,value", "-p", "head", "default"]


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_params_subprocess_prints_980740() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LORA_AGNEWS_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "lora_agnews", "params", *STARTING_POINT],
                          capture_output=True, text=True, env=env, cwd=paths.ROOT.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "trainable_params: 980740"
    assert "Traceback" not in proc.stderr


def test_params_in_process_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["params", *STARTING_POINT, "-p", "head", "linear", "-p", "lora_r", "18"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "trainable_params: 998404"
    assert "head: linear" in out and "r=18" in out


def test_params_over_budget_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["params", *STARTING_POINT, "-p", "lora_r", "8"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == "trainable_params: 1036036"
    assert "over budget by 36,036" in captured.err


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [(["params", "-p", "lora_rank", "8"], ["'lora_rank'", "lora_r"]),
     (["params", "-p", "lora_r", "eight"], ["'lora_r'", "expects int"]),
     (["params", "-p", "head", "mlp"], ["'head'", "lora-dense"]),
     (["params", "--profile", "nosuch"], ["'nosuch'", "demo", "paper", "smoke"]),
     (["budget", "--profile", "smoke", "--heads", "default,mlp"], ["mlp"]),
     (["train", "--profile", "smoke", "-p", "budget", "1000", "--out", "{tmp}/run"], ["over the budget of 1,000"]),
     (["train", "--profile", "smoke", "-p", "data", "{tmp}/nowhere", "--out", "{tmp}/run"], ["does not exist"])],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], fragments: list[str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_budget_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["budget", "-p", "model_name", "roberta-base", "-p", "init", "random", "--heads", "default,linear",
            "--targets", "query,key,value"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "budget: 1,000,000" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("query,key,value")}
    assert rows["default"][4:] == ["7", "980,740"]  # fixed, per rank, max r, total at max r
    assert rows["linear"][4:] == ["18", "998,404"]
    assert rows["linear"][2:4] == ["3,076", "55,296"]


def test_train_predict_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--profile", "smoke", "-p", "epochs", "1", "-p", "max_train_samples", "64", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert f"accuracy: {metrics['accuracy']:.4f}" in printed
    assert f"trainable_params: {metrics['trainable_params']}" in printed
    assert metrics["config"]["epochs"] == 1.0 and metrics["split_sizes"]["train"] == 64
    # the run records what its numbers mean: rows used of those available, pretrained or not
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    n_train = sum(1 for _ in open(paths.SAMPLE_DATA / "train.csv", encoding="utf-8"))
    n_test = sum(1 for _ in open(paths.SAMPLE_DATA / "test.csv", encoding="utf-8"))
    for facts in (metrics, record):
        assert facts["pretrained"] is False and facts["n_train_used"] == 64
        assert facts["n_train_available"] == n_train and facts["n_test_used"] == facts["n_test_available"] == n_test
        assert facts["n_validation"] == metrics["split_sizes"]["validation"]
    # the same command again reuses the complete run
    assert cli.main(argv) == 0
    assert f"accuracy: {metrics['accuracy']:.4f}" in capsys.readouterr().out
    # the saved adapter classifies new text
    assert cli.main(["predict", "--adapter", str(out / "adapter"), "Stocks fall on oil prices",
                     "Team wins the cup final"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, ["Stocks fall on oil prices", "Team wins the cup final"]):
        label, confidence, _, shown_text = line.split("\t")
        assert label in ("World", "Sports", "Business", "Sci/Tech")
        assert 0.25 <= float(confidence) <= 1.0 and shown_text == text


def test_predict_without_texts_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["predict", "--adapter", str(tmp_path)]) == 2
    assert "nothing to classify" in capsys.readouterr().err
