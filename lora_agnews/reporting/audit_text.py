"""The audit's and the retraining check's words: one paragraph for the book, the report, the README and the site.

Every sentence reads a record (``results/<profile>/audit.json``, ``archive_verify.json`` or the copies the archive
keeps); nothing is re-scored here. May import: nothing of the package.
"""

from __future__ import annotations

from typing import Any


def verify_sentence(record: dict[str, Any]) -> str:
    """``archive --verify``'s result in one sentence: how many archived runs were retrained where, and whether
    the same machine kind gave the same labels."""
    checks = record["checks"]
    same = [c for c in checks if c["same_kind"]]
    other = [c for c in checks if not c["same_kind"]]
    machine = record["machine"]
    text = (f"{len(checks)} archived run(s) drawn at random (seed {record['seed']}) were retrained from their recorded "
            f"configuration on {machine.get('cpu', 'a CPU')} ({machine['cpu_kind']}, GPU: {machine['gpu']}) on "
            f"{record['checked_at'][:10]}.")
    if same:
        identical = sum(c["label_agreement"] == 1.0 for c in same)
        text += (f" Of the {len(same)} computed on this machine kind, {identical} gave identical labels (largest logit "
                 f"difference {max(c['max_abs_logit_diff'] for c in same):.1e}).")
    if other:
        text += (f" {len(other)} were computed on another kind: {min(c['label_agreement'] for c in other):.2%} of "
                 f"labels or more agree there (rounding may differ between kinds; stated, not required).")
    return text


def summary(record: dict[str, Any] | None) -> str:
    """One paragraph for the book, the report and the site: what was re-scored, where each number was computed and
    re-scored (both precisions), and under which rule it reproduced."""
    if record is None:
        return "The audit has not run on these results."
    without = record.get("restored_without_adapter") or []
    note = (f" {len(without)} more run(s), restored from the archive without their adapters, were not re-scored "
            f"(`archive --verify` retrains a sample of them)." if without else "")
    if not record["all_reproduced"]:
        if record["reproduced"] == record["runs"]:
            return "The refitted TF-IDF baseline does not give its recorded accuracy."
        return f"{record['runs'] - record['reproduced']} of {record['runs']} saved models do not reproduce their numbers."
    whose = "with an adapter here" if without else "behind these numbers"
    baseline = (" The TF-IDF baseline, refitted, gives its recorded accuracy and macro F1 exactly."
                if record.get("baseline") else "")
    if "settings" not in record:  # a record kept in the archive by an audit before settings were recorded
        return (f"All {record['runs']} saved models {whose}, reloaded in a fresh process and re-scored on "
                f"their {record['rows']:,} test rows, reproduce their recorded predictions (largest logit difference "
                f"{record['largest_abs_logit_diff']:.1e}; audit {record['seconds']:.0f} s)." + baseline + note)
    return (f"All {record['runs']} saved models {whose}, reloaded in a fresh process and re-scored on "
            f"{record['rows']:,} test rows{_sampled(record)}, reproduce their recorded predictions "
            f"{_where(record)} (largest logit difference {record['largest_abs_logit_diff']:.1e}; audit "
            f"{record['seconds']:.0f} s)." + baseline + note + _elsewhere(record))


def verdict(record: dict[str, Any]) -> str:
    """A short clause: how many models reproduce, re-scored where and in what, under which rule."""
    st = record.get("settings")
    if not st:
        return f"audit: {record['reproduced']} of {record['runs']} saved models reproduce"
    how = "exactly" if not st["across_machines"] and not st["differing"] else "within numerical noise"
    differ = f", {st['differing']} near-tie label(s) differ" if st["differing"] else ""
    return (f"audit re-scored here on {' and '.join(st['here']) or 'this machine'}: {record['reproduced']} of "
            f"{record['runs']} saved models reproduce {how} ({st['identical']:,} of {st['labels']:,} labels identical"
            f"{differ})")


def _sampled(record: dict[str, Any]) -> str:
    n = record["settings"]["sampled"]
    skipped = len(record.get("not_remerged") or [])
    if not n and not skipped:
        return ""
    parts = ([f"{n} models restored from the archive on {record['sample_rows']} rows each, drawn at random; the main "
              f"run and the merging study's own adapters on all their rows"] if n else [])
    if skipped:
        parts.append(f"{skipped} more merged models, of the merge methods not drawn for re-merging here, keep their "
                     f"archived scores")
    return f" ({'; '.join(parts)}; `audit --full` re-scores every row and re-merges every merge)"


def _where(record: dict[str, Any]) -> str:
    st = record["settings"]
    here = " and ".join(st["here"])
    if not st["across_machines"] and st["differing"]:
        return (f"within the noise of other batches: computed and re-scored on {here}, the same machine kind and "
                f"precision; {st['differing']:,} of {st['labels']:,} labels differ, all on sampled rows and near-ties "
                f"(largest recorded margin {st['largest_margin']:.3g}): a sample is batched and padded apart from the "
                f"rows it was scored with")
    if not st["across_machines"]:
        return f"exactly: computed and re-scored on {here}, the same machine kind and precision"
    where = "; ".join(record.get("computed_on") or []) or "another machine"
    differ = (f", the {st['differing']:,} that differ all near-ties (largest recorded margin {st['largest_margin']:.3g},"
              f" below the bound {st['bound']:g})" if st["differing"] else "")
    return (f"within numerical noise: computed on {where} in {' and '.join(st['computed'])}; re-scored here on "
            f"{here}: {st['identical']:,} of {st['labels']:,} labels identical{differ}")


def _elsewhere(record: dict[str, Any]) -> str:
    kept = record.get("audited_where_computed")
    if not kept:
        return ""
    return (f" Where they were computed, the audit of {str(kept['checked_at'])[:10]} re-scored all {kept['runs']} saved "
            f"models on their {kept['rows']:,} test rows: {kept['reproduced']} reproduced exactly.")
