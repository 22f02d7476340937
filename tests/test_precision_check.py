"""benchmarks/precision_check.py trains the same smoke run in bf16 and fp32 and compares them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import pytest
from conftest import sample_rows
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_precision_check_compares_two_real_runs(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LORA_AGNEWS_RESULTS": str(tmp_path / "results"),
           "LORA_AGNEWS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision_check.py"), "--profile", "smoke",
                           "-p", "epochs", "1", "--out", str(tmp_path / "check")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "check" / "precision_check.json").read_text())
    for p in ("bf16", "fp32"):
        run = json.loads((tmp_path / "check" / p / "run.json").read_text())
        assert run["config"]["precision"] == p
        assert 0.0 <= report["metrics"][p]["accuracy"] <= 1.0
    assert 0.0 <= report["prediction_agreement"] <= 1.0 and report["max_abs_logit_diff"] >= 0.0
    assert report["n_eval"] == sample_rows()[1]
    assert "test predictions that agree" in proc.stdout


def test_precision_check_names_a_bad_parameter(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision_check.py"), "--profile", "smoke",
                           "-p", "epoch", "1", "--out", str(tmp_path / "check")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and "epoch" in proc.stderr and not (tmp_path / "check").exists()
