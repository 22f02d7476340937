"""How far do archived logits move when re-scored on another machine kind or in another precision?

The evidence behind the audit's rule across machines (:mod:`lora_agnews.studies.agreement`): every archived run
that keeps its adapter (the main run and the merging study's task adapters) is re-scored from the archive entry
alone, in this process's setting, and compared with the logits it recorded: the largest |logit difference|, how
many labels differ, the recorded top-two margins of those rows, and the smallest margin of any row. Run it once per
setting, each in its own process, since oneDNN reads its ISA cap when it starts::

    .venv/bin/python benchmarks/cross_machine_rescore.py --profile cpu --precision bf16          # AMX bf16 (native)
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/cross_machine_rescore.py --profile cpu --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/cross_machine_rescore.py --profile cpu --precision bf16 --rows 400

``--model-dir`` points a hub-id encoder at a local copy (the base profile: ``~/.cache/mpnet-base``); ``--data``
points at the local AG News copy the archive was computed on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_agnews.core import hardware, paths  # noqa: E402
from lora_agnews.core.archive import ENTRIES, ENTRY_FILE, manifest  # noqa: E402
from lora_agnews.core.precision import scoring_in  # noqa: E402
from lora_agnews.core.score import rescore  # noqa: E402
from lora_agnews.studies.agreement import margins  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--precision", choices=("fp32", "bf16"), required=True)
    p.add_argument("--rows", type=int, default=0, help="score only the first N test rows of each model (0: all)")
    p.add_argument("--model-dir", default="", help="a local copy of the encoder the archive names by hub id")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "agnews-subset"))
    p.add_argument("--json", type=Path, help="append the figures to this JSON file")
    p.add_argument("--save", type=Path, help="also save each model's re-scored logits here (<dir>/<entry>.npy)")
    p.add_argument("--against", type=Path, help="compare with the logits another setting saved with --save, not "
                   "with the archive's")
    return p.parse_args(argv)


def local_copy(entry: Path, tmp: Path, model_dir: str, data: str) -> Path:
    """The entry copied with its adapter's configuration pointed at this machine's encoder and data."""
    run = tmp / entry.name
    shutil.copytree(entry, run)
    cfg_file = run / "adapter" / "lora_agnews_config.json"
    record = json.loads(cfg_file.read_text())
    cfg = record["config"]
    if model_dir and not Path(cfg["model_name"]).is_dir() and "MiniLM" not in cfg["model_name"]:
        cfg["model_name"] = str(Path(model_dir).expanduser())
    if str(cfg.get("data", "")).rstrip("/").endswith("agnews-subset") and not Path(cfg["data"]).is_dir():
        cfg["data"] = data
    cfg_file.write_text(json.dumps(record))
    return run


def measure(entry: Path, args: argparse.Namespace, tmp: Path) -> dict:
    info = json.loads((entry / ENTRY_FILE).read_text())
    run = local_copy(entry, tmp, args.model_dir, args.data)
    with np.load(entry / "test_predictions.npz") as saved:
        recorded = saved["logits"]
    if args.against:
        recorded = np.load(args.against / f"{entry.name}.npy")
    rows = np.arange(min(args.rows, len(recorded))) if args.rows else None
    start = time.perf_counter()
    with scoring_in(args.precision):
        got = rescore(run, "cpu", rows=rows).logits
    seconds = time.perf_counter() - start
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        np.save(args.save / f"{entry.name}.npy", got)
    recorded = recorded if rows is None else recorded[rows]
    if got.shape[1] != recorded.shape[1] or recorded.ndim != 2:
        raise SystemExit(f"{info['path']}: shapes differ {recorded.shape} vs {got.shape}")
    differs = recorded.argmax(1) != got.argmax(1)
    margin = margins(recorded)
    against = "saved" if args.against else json.loads((entry / "metrics.json").read_text()).get("precision")
    return {"profile": args.profile, "path": info["path"], "computed": hardware.kind_of(info["computed"]["machine"]),
            "recorded_precision": against, "against": str(args.against or "archive"),
            "here": hardware.cpu_kind(), "precision": args.precision, "rows": int(len(recorded)),
            "max_abs_logit_diff": float(np.abs(recorded - got).max()), "labels_differ": int(differs.sum()),
            "margins_of_differing": sorted(float(m) for m in margin[differs]),
            "smallest_margin": float(margin.min()), "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    entries = {e: i for e, i in manifest(args.profile)["entries"].items() if i.get("adapter")}
    out = []
    with tempfile.TemporaryDirectory(prefix="cross-machine-") as tmp:
        for eid in sorted(entries, key=lambda e: entries[e]["path"]):
            r = measure(paths.archive_dir(args.profile) / ENTRIES / eid, args, Path(tmp))
            out.append(r)
            print(f"{r['profile']} {r['path']}: {r['computed']} ({r['recorded_precision']}) -> {r['here']} "
                  f"({r['precision']}), {r['rows']} rows: max |dlogit| {r['max_abs_logit_diff']:.2e}, "
                  f"{r['labels_differ']} labels differ (recorded margins {r['margins_of_differing']}), "
                  f"smallest margin {r['smallest_margin']:.2e}, {r['seconds']} s", flush=True)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(old + out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
