"""Shared fixtures: every test writes into a temporary results/build/cache tree, never the repo's."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "agnews-subset"
SHARED_TOKENIZER = SHARED / "tokenizers" / "roberta-base"

os.environ.setdefault("LORA_AGNEWS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The committed archive/ would otherwise fill the runs a test trains (module fixtures run outside the per-test
# isolation below): tests read and write only an archive of their own.
os.environ["LORA_AGNEWS_ARCHIVE"] = tempfile.mkdtemp(prefix="lora-agnews-archive-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_macros(path: Path) -> dict[str, str]:
    """``{MacroName: value}`` of a generated macros file, to compare with the results it comes from."""
    pattern = re.compile(r"^\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}$")
    lines = (pattern.match(line.strip()) for line in Path(path).read_text(encoding="utf-8").splitlines())
    return {m.group(1): m.group(2) for m in lines if m}


def point_outputs_at(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """results/, build/ and the token cache under ``root``."""
    for name in ("RESULTS", "BUILD", "CACHE", "ARCHIVE"):
        monkeypatch.setenv(f"LORA_AGNEWS_{name}", str(root / name.lower()))


@contextlib.contextmanager
def outputs_under(root: Path) -> Iterator[pytest.MonkeyPatch]:
    """For module-scoped fixtures (the autouse isolation below is per test): outputs under ``root`` while open."""
    with pytest.MonkeyPatch.context() as mp:
        point_outputs_at(mp, root)
        yield mp


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point results/, build/ and the token cache at a per-test temporary directory."""
    root = tmp_path_factory.mktemp("out")
    point_outputs_at(monkeypatch, root)
    return root


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "train.csv").is_file():
        pytest.skip("../shared/agnews-subset is not present (development machines only)")
    return SHARED_DATA


@pytest.fixture
def smoke_config():
    from lora_agnews.core import config

    return config.load("smoke")


@pytest.fixture(scope="session")
def train_smoke():
    """``train_smoke(root, epochs)``: one real smoke run in ``root/run``, its outputs and cache under
    ``root`` (for module-scoped fixtures that several tests inspect); returns the run directory."""

    def _train(root: Path, epochs: int = 1) -> Path:
        from lora_agnews.core import config
        from lora_agnews.core.train import train

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LORA_AGNEWS_RESULTS", str(root / "results"))
            mp.setenv("LORA_AGNEWS_CACHE", str(root / "cache"))
            train(config.load("smoke", {"epochs": epochs}), root / "run")
        return root / "run"

    return _train


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test process: the models are tiny, and on a shared 2-core machine
    intra-op threads fight each other (a smoke run was 5x slower with the default)."""
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The pipeline tests first: `make test` runs two workers (pytest-xdist, a file per worker), and the smoke
    pipeline is the longest file, so it starts at once on one worker while the other takes the rest."""
    import torch

    items.sort(key=lambda item: "pipeline" not in item.keywords)  # stable: the order within each group is kept
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def sample_rows() -> tuple[int, int]:
    """Rows of the shipped sample's train.csv and test.csv (tests follow the sample, never hard-code it)."""
    from lora_agnews.core.tasks.agnews import load_raw

    train, test = load_raw("sample")
    return len(train), len(test)


def fresh_process_logits(adapters: dict[str, Path], out_dir: Path) -> dict[str, Any]:
    """Test logits of each saved adapter, loaded and scored in ONE fresh interpreter (nothing cached in this one)."""
    import json
    import subprocess
    import sys

    import numpy as np

    script = (
        "import json, sys, numpy as np\n"
        "from lora_agnews.core.adapter import load_adapter, predict_logits_for_texts\n"
        "from lora_agnews.core.dataset import load_splits\n"
        "for name, adapter in json.loads(sys.argv[1]).items():\n"
        "    m, tok, cfg = load_adapter(adapter)\n"
        "    texts = load_splits(cfg).test['text'].tolist()\n"
        "    np.save(sys.argv[2] + '/' + name + '.npy', predict_logits_for_texts(m, tok, cfg, texts))\n")
    env = {**os.environ, "LORA_AGNEWS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, json.dumps({k: str(v) for k, v in adapters.items()}),
                          str(out_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {name: np.load(out_dir / f"{name}.npy") for name in adapters}


def task_config(directory: Path, **changes: Any) -> Any:
    """The smoke recipe on a task directory, every test row scored (the task tests' runs)."""
    from lora_agnews.core import config

    return config.load("smoke", {"task": str(directory), "epochs": 4, "max_eval_samples": 0, **changes})
