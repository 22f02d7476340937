"""DDP on CPU (gloo): ``torchrun`` and ``accelerate launch`` with 2 processes give one correct run.

Only rank 0 writes the record, the adapter and the metrics and scores the test split; the
other rank leaves cleanly after training (no barrier to hang on). Each launch starts two
fresh Python processes, so the module is marked slow (CI runs it too).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lora_agnews.core import runs
from lora_agnews.core.paths import read_json
from conftest import sample_rows

pytestmark = pytest.mark.slow

STEPS = 5 * -(-(sample_rows()[0] - round(0.1 * sample_rows()[0])) // 32)  # smoke: 5 epochs of ceil(train rows / (16 per process x 2 processes))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LORA_AGNEWS_PROGRESS": "0"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _launch(launcher: list[str], args: list[str], timeout: int = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*launcher, "-m", "lora_agnews", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout)  # a deadlock fails here instead of hanging CI


def _torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]


def _accelerate() -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port())]


def _check_run(out: Path, proc: subprocess.CompletedProcess[str]) -> None:
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    record = runs.read_record(out)
    assert record["status"] == "complete" and record["world_size"] == 2
    assert record["attempts"] == 1, "only rank 0 may write the run record"
    metrics = read_json(out / runs.METRICS_FILE)
    assert metrics["global_steps"] == STEPS, "both processes share one batch schedule"
    assert metrics["accuracy"] > 0.6, f"chance is 0.25; got {metrics['accuracy']}"
    assert metrics["n_eval"] == sample_rows()[1]
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "adapter" / "README.md").is_file()
    # rank 0 alone scores the test split and reports; rank 1 prints nothing of it
    assert log.count("scoring the test split") == 1
    assert proc.stdout.count("accuracy:") == 1
    assert not list(out.rglob("*.tmp"))


def test_torchrun_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--profile", "smoke", "--out", str(out)]
    _check_run(out, _launch(_torchrun(), args))

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = _launch(_torchrun(), args)  # every rank takes the early "complete" exit together
    assert again.returncode == 0, again.stderr[-4000:]
    assert "reusing it" in again.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    refused = _launch(_torchrun(), [*args, "-p", "lora_r", "4"])  # rank 0's refusal reaches rank 1
    assert refused.returncode != 0
    assert "holds a run of a different configuration" in refused.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_accelerate_launch_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _check_run(out, _launch(_accelerate(), ["train", "--profile", "smoke", "--out", str(out)]))
