"""``archive --verify N``: archived runs retrained here from their recorded configuration, their labels compared.

The audit re-scores saved models; runs restored without their adapters can only be checked by training them
again. The same machine kind must give identical labels; another kind may round differently in the last bits, so
there the agreement is stated, not required.
May import: ``core`` and :mod:`.audit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core import hardware, paths, runs
from ..core.paths import read_json, say, write_json
from .audit import VERIFY_FILE, AuditError


def verify_archive(profile: str, n: int, seed: int = 0) -> dict[str, Any]:
    """Retrain ``n`` archived runs, drawn with ``seed``, from their recorded configuration; compare predictions.

    The same CPU kind (or GPU) must give identical labels; another kind may round differently in the last
    bits, so there the agreement rate is stated, not required. Writes ``results/<profile>/archive_verify.json``.
    Raises :class:`AuditError` when a run of the same kind disagrees.
    """
    import random

    from ..core.config import from_dict
    from ..core.archive import ENTRIES, manifest
    from ..core.train import train

    if n < 1:
        raise AuditError(f"--verify {n}: give the number of archived runs to retrain (1 or more).")
    entries = {eid: e for eid, e in manifest(profile)["entries"].items() if e.get("kind") == "run"}
    if not entries:
        raise AuditError(f"{paths.archive_dir(profile)} holds no archived run; archive one first "
                         f"(python -m lora_agnews archive --profile {profile}).")
    here = hardware.machine()
    checks = []
    for eid in random.Random(seed).sample(sorted(entries), min(n, len(entries))):
        checks.append(_verify_entry(paths.archive_dir(profile) / ENTRIES / eid, here, train, from_dict))
        say(f"verify: {checks[-1]['line']}")
    record = {"profile": profile, "checked_at": runs.now(), "machine": here, "seed": seed, "checks": checks,
              "all_identical_where_expected": all(c["ok"] for c in checks)}
    write_json(record, paths.results_dir(profile) / VERIFY_FILE)
    bad = [c["line"] for c in checks if not c["ok"]]
    if bad:
        raise AuditError("archived runs retrained on the same CPU kind do not give their recorded labels:\n"
                         + "\n".join(bad))
    return record


def _verify_entry(entry: Path, here: dict[str, str], train: Any, from_dict: Any) -> dict[str, Any]:
    import tempfile

    from ..core.archive import ENTRY_FILE, identity, read_entry

    info = read_json(entry / ENTRY_FILE)
    cfg = from_dict(read_entry(entry, runs.RUN_FILE)["config"])  # the data's path as this checkout has it
    if identity(runs.run_key(cfg)) != info["identity"]:
        raise AuditError(f"{info['path']}: its recorded configuration no longer gives the archived key (the data or "
                         f"the code's data format changed), so it cannot be retrained as it was.")
    with tempfile.TemporaryDirectory(prefix="lora-agnews-verify-") as tmp:
        train(cfg, Path(tmp) / "run")
        with np.load(Path(tmp) / "run" / "test_predictions.npz") as new, \
                np.load(entry / "test_predictions.npz") as old:
            agreement = float((new["logits"].argmax(1) == old["logits"].argmax(1)).mean())
            diff = float(np.abs(new["logits"] - old["logits"]).max()) if new["logits"].shape == old["logits"].shape \
                else float("inf")
    then = info["computed"].get("machine") or {}
    same = then.get("cpu_kind") == here["cpu_kind"] and then.get("gpu") == here["gpu"]
    kinds = f"{then.get('cpu_kind', 'unknown')}/{then.get('gpu', 'unknown')} -> {here['cpu_kind']}/{here['gpu']}"
    line = (f"{info['path']}: {100 * agreement:.2f}% of labels agree, max |logit diff| {diff:.1e} "
            f"({'same' if same else 'other'} machine kind: {kinds})")
    return {"path": info["path"], "id": entry.name, "label_agreement": agreement, "max_abs_logit_diff": diff,
            "same_kind": same, "ok": agreement == 1.0 or not same, "line": line}
