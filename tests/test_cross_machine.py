"""The demo's archive, computed on an AMX CPU in bf16, restored and audited as a CPU without bf16 units.

``ONEDNN_MAX_CPU_ISA=AVX2`` makes any machine one without bf16 units: the audit then re-scores in fp32 and the rule
across machines holds (labels may differ on near-ties only). The same rule must still catch what the audit exists
for: an adapter swapped with another run's, a head that is not the run's, an edited logits file, and an entry
whose data differs. The demo's real pretrained encoder (MiniLM, from PyPI), not a random model: on a random model
every row is a near-tie and nothing could be caught.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from lora_agnews.core import config, paths

pytestmark = pytest.mark.slow  # a restore and five audits in fresh processes: `make test-slow`
REPO_ARCHIVE = paths.ROOT / "archive"
MAIN = Path("runs") / "main"


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/demo holding the archived main run (with its adapter), restored from the committed archive."""
    from lora_agnews.core.restore import restore_run

    root = tmp_path_factory.mktemp("restored")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(root / "results"))
        mp.setenv("LORA_AGNEWS_ARCHIVE", str(REPO_ARCHIVE))
        run_dir = paths.runs_dir("demo") / "main"
        run_dir.mkdir(parents=True)
        assert restore_run(run_dir, config.load("demo")), "the committed demo archive no longer holds the main run"
    return root / "results"


def audit_as_avx2(results: Path, tmp: Path) -> subprocess.CompletedProcess:
    """``python -m lora_agnews audit --profile demo`` on a copy of ``results``, as a CPU without bf16 units."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "LORA_AGNEWS_RESULTS": str(results),
           "LORA_AGNEWS_ARCHIVE": str(REPO_ARCHIVE), "LORA_AGNEWS_CACHE": str(tmp / "cache")}
    return subprocess.run([sys.executable, "-m", "lora_agnews", "audit", "--profile", "demo"], cwd=paths.ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def _swap_adapter(run: Path, tmp: Path) -> None:
    from lora_agnews.core.archive import ENTRIES, MANIFEST

    entries = json.loads((REPO_ARCHIVE / "demo" / MANIFEST).read_text())["entries"]
    other = next(e for e, i in entries.items() if i["path"] == "runs/merging/tasks/agnews")
    shutil.copy(REPO_ARCHIVE / "demo" / ENTRIES / other / "adapter" / "adapter_model.safetensors",
                run / "adapter" / "adapter_model.safetensors")


def _other_head(run: Path, tmp: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    head = [n for n in tensors if "classifier" in n and n.endswith("weight")]
    assert head, "the main run's adapter keeps no head"
    for name in head:  # the classes' rows in another order: every logit moves, the body stays the run's
        tensors[name] = tensors[name].roll(1, dims=0).contiguous()
    save_file(tensors, str(run / "adapter" / "adapter_model.safetensors"), metadata={"format": "pt"})


def _edited_logits(run: Path, tmp: Path) -> None:
    saved = dict(np.load(run / "test_predictions.npz"))
    logits = saved["logits"]
    row = int(np.argmax(np.sort(logits, 1)[:, -1] - np.sort(logits, 1)[:, -2]))  # the most confident row
    logits[row] = logits[row][::-1].copy()
    np.savez(run / "test_predictions.npz", **saved)


def _other_data(run: Path, tmp: Path) -> None:
    import csv

    data = tmp / "sample"
    shutil.copytree(paths.ROOT / "data" / "sample", data)
    rows = list(csv.reader(open(data / "test.csv", encoding="utf-8")))
    with open(data / "test.csv", "w", newline="", encoding="utf-8") as f:  # the same labels, other stories
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows([[r[0], r[1], " ".join(reversed(r[2].split()))] for r in rows])
    adapter_cfg = run / "adapter" / "lora_agnews_config.json"
    record = json.loads(adapter_cfg.read_text())
    record["config"]["data"] = str(data)
    adapter_cfg.write_text(json.dumps(record))


def test_the_archive_restored_on_a_cpu_without_bf16_units_reproduces_within_numerical_noise(
        restored: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(restored, results)
    done = audit_as_avx2(results, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((results / "demo" / "audit.json").read_text())
    check = next(c for c in record["checks"] if c["run"] == "runs/main")
    assert check["computed"] == "AMX (bf16)" and check["here"] == "AVX2 (fp32)" and not check["exact"]
    assert check["n_test"] == check["n_total"] == 400 and 0 < check["max_abs_logit_diff"] <= check["tolerance"]
    assert record["settings"]["across_machines"] == 1 and record["machine"]["cpu_kind"] == "AVX2"


@pytest.mark.parametrize("tamper", [_swap_adapter, _other_head, _edited_logits, _other_data],
                         ids=["adapter swapped", "head not the run's", "logits edited", "data differs"])
def test_a_tampered_entry_fails_the_audit_across_machines(restored: Path, tmp_path: Path,
                                                          tamper: Callable[[Path, Path], None]) -> None:
    results = tmp_path / "results"
    shutil.copytree(restored, results)
    tamper(results / "demo" / MAIN, tmp_path)
    done = audit_as_avx2(results, tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    record_file = results / "demo" / "audit.json"
    if record_file.is_file():  # a model that loads: its check names the run and both settings
        check = next(c for c in json.loads(record_file.read_text())["checks"] if c["run"] == "runs/main")
        assert not check["reproduced"] and not check["exact"]
    assert "runs/main" in done.stdout + done.stderr
