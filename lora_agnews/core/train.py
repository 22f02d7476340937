"""A complete run: restore it from the archive of complete runs, or train it (a teacher's logits included).

Training uses the Hugging Face Trainer: seeded, checkpointed, resumable, fast by default, the model chosen
on the validation split and the test split scored once at the end. Before a pipeline-owned run is trained,
the committed archive (``archive/<profile>/``) is asked for an entry with the same identity.
May import every other core module but ``export``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import hardware, paths, runs
from .config import Config, load, require_trackers
from .tasks.registry import check_same_labels, model_labels
from .dataset import Splits, load_splits, load_task
from .tasks.multilabel_scores import best_micro_f1
from .tokens import PadCollator, TokenizedDataset, encode, tokenize
from .evaluate import evaluate_model, pad_multiple, predict_logits
from .budget import check_budget, parameter_breakdown
from .build import MergeError, build_model, check_max_length, merge
from .encoders import build_tokenizer, model_config
from .methods import METHODS
from .precision import device_for, resolve_precision
from .quantize import check_layout, require_quantization
from .paths import _atomic_write_bytes, interactive, quiet_libraries, read_json, say, write_json

# --------------------------------------------------------------------------- knowledge distillation: the teacher's logits
# Knowledge distillation: a teacher's logits file, and reading it back for the LoRA student.
#
# The file maps training texts to teacher logits (``texts`` + ``logits`` in one .npz), so the
# student can be trained on any split or subsample of the same data: rows are matched by the
# normalised text, not by position, and a missing text is an error rather than a silent zero.
# Any fine-tuned classifier over the task's classes can be the teacher: a lora-agnews adapter directory, or a
# Hugging Face sequence-classification model directory.

class DistillError(ValueError):
    """The logits file is missing, malformed or does not cover the training texts."""


def load_teacher(teacher_dir: Path, names: Sequence[str]) -> tuple[Any, Any, int]:
    """(model, tokenizer, max_length) from an adapter directory or a plain HF classifier directory.

    The teacher must classify into the task's ``names``: an adapter of this project carries its label
    names (checked by name); a plain classifier from elsewhere often has only ``LABEL_0..`` (checked by count).
    """
    from .adapter import CONFIG_FILE, load_adapter

    teacher_dir = Path(teacher_dir)
    if (teacher_dir / CONFIG_FILE).is_file():
        model, tokenizer, cfg = load_adapter(teacher_dir)
        check_same_labels(names, model_labels(model), "the training data", f"teacher {teacher_dir}")
        return model, tokenizer, cfg.max_length
    if not (teacher_dir / "config.json").is_file():
        raise DistillError(f"{teacher_dir} is neither a lora-agnews adapter directory nor a Hugging Face model "
                           f"directory (no config.json). Pass RUN/adapter or a saved classifier.")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir)).eval()
    if model.config.num_labels != len(names):
        raise DistillError(f"teacher {teacher_dir} has {model.config.num_labels} labels {list(model_labels(model))}; "
                           f"the training data has {len(names)} ({', '.join(names)}).")
    return model, AutoTokenizer.from_pretrained(str(teacher_dir)), 256


def write_teacher_logits(teacher_dir: Path, texts: Sequence[str], out: Path, names: Sequence[str],
                         batch_size: int = 128) -> Path:
    """An ``.npz`` with the texts, the teacher's logits and the class names they are over."""

    model, tokenizer, max_length = load_teacher(teacher_dir, names)
    ids = tokenize(list(texts), tokenizer, max_length, cache=False)
    logits = predict_logits(model, TokenizedDataset(ids, [0] * len(ids)), tokenizer.pad_token_id, batch_size)
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, texts=np.asarray(list(texts), dtype=object).astype(str), logits=logits,
                        labels=np.asarray(list(names), dtype=str))
    return _atomic_write_bytes(buffer.getvalue(), Path(out))


def teacher_logits_for(path: str | Path, texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Teacher logits aligned with ``texts`` (float32, shape ``(len(texts), len(names))``)."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"distill_logits file {path} does not exist. Write one with "
                           f"`python -m lora_agnews logits --teacher RUN/adapter --out {path}`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_texts, logits = data["texts"], data["logits"]
            stored_names = data["labels"].tolist() if "labels" in data.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise DistillError(f"{path} is not a teacher logits file (needs arrays 'texts' and 'logits'): {exc}") from None
    if logits.ndim != 2 or logits.shape[1] != len(names) or len(stored_texts) != len(logits):
        raise DistillError(f"{path}: logits must have shape (n, {len(names)}) for the training data's classes "
                           f"({', '.join(names)}) and match 'texts'; got {logits.shape}.")
    if stored_names is not None:
        check_same_labels(names, stored_names, "the training data", f"teacher logits file {path}")
    index = {t: i for i, t in enumerate(stored_texts.tolist())}
    missing = [t for t in texts if t not in index]
    if missing:
        raise DistillError(f"{path} has no teacher logits for {len(missing)} of {len(texts)} training texts "
                           f"(first: {missing[0][:60]!r}). Regenerate it for this data with `python -m lora_agnews "
                           f"logits --teacher DIR --out {path} -p data ...`.")
    return logits[[index[t] for t in texts]].astype(np.float32)


def write_logits_for_data(teacher_dir: Path, cfg: Config, out: Path) -> tuple[Path, int]:
    """Teacher logits for every text of the configuration's training file (so any split or subsample is covered).

    Returns the file written and how many texts it holds.
    """
    train, _, task = load_task(cfg)
    texts = train["text"].tolist()
    return write_teacher_logits(Path(teacher_dir), texts, Path(out), task.labels), len(texts)


# --------------------------------------------------------------------------- the archive of complete runs
# The archive of complete runs: ``archive/<profile>/``, committed, so runs outlive the machine that computed them.
#
# A profile's base runs take hours on a CPU; the archive carries them from one sitting (or machine) to the next
# and to a fresh clone. It is written only by ``python -m lora_agnews archive`` (:func:`archive_profile`) and
# read only through :func:`restore_run` and :func:`restore_study`, which the training code asks before it
# trains a pipeline-owned run: an entry whose identity matches the run asked for is copied into
# ``results/<profile>/`` instead of being trained again. Nothing else is ever taken from it.
#
# Layout::
#
#     archive/<profile>/MANIFEST.json        written_by, archive_format, profile, entries {id: summary}
#     archive/<profile>/entries/<id>/        one run: entry.json (identity, provenance, files), the run's
#                                            record, metrics, history, test logits and labels (npz, exact fp32),
#                                            its adapter where a study reloads it (:data:`KEPT_ADAPTERS`)
#
# An entry's identity is the key its record holds (for a training run: the configuration's run key with the
# data's content hash, :func:`lora_agnews.core.runs.run_key`) and :data:`~lora_agnews.core.paths.RUN_FORMAT`;
# its id is the hash of that identity, so a lookup is one path, and a changed parameter, edited data or a new
# run format never finds an old entry: :func:`stale_entries` lists those with what changed.

ARCHIVE_FORMAT = 1
MANIFEST = "MANIFEST.json"
ENTRIES = "entries"
ENTRY_FILE = "entry.json"
# the studies' own results (statistics.json, ...) as the pipeline computed them from the archived runs: the generated
# findings read them (lora_agnews.reporting.findings); a restore never does (the studies recompute them)
STUDIES = "studies"
WRITER = "python -m lora_agnews archive"
RESTORED = runs.RESTORED
# The files of a run that the book, the report and the audit read (checkpoints and TensorBoard logs are not).
RUN_FILES = (runs.RUN_FILE, runs.METRICS_FILE, "history.json", "test_predictions.npz")
ADAPTER = "adapter"
# Runs (relative to results/<profile>/runs) whose adapter a notebook reloads: 03 re-scores the main run's, 05
# merges the task adapters. Every other run is restored without its adapter (its numbers need only its logits);
# the audit lists those, and `archive --verify` retrains a sample of them.
KEPT_ADAPTERS = ("main", "merging/tasks/*")
# The merging study's own trained models: a record keyed like a run, its test logits, its trained tensors.
STUDY_FILES = {"head_only.json": ("test_predictions.npz", "trainable.safetensors"),
               "multitask.json": ("test_predictions.npz", "trainable.safetensors"),
               "merged.json": ("test_predictions.npz",)}
STUDY_RECORDS = tuple(STUDY_FILES)
TEXT_FILES = (".json", ".md")  # an entry's files that may name paths (records, configurations, the model card)


class ArchiveError(paths.ProjectError):
    """The archive cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    """One complete run in ``results/<profile>/`` that an archive entry can hold."""

    path: Path
    rel: str  # relative to results/<profile>
    record_file: str  # run.json, head_only.json or multitask.json
    key: Any  # what its record says identifies it

    @property
    def kind(self) -> str:
        return "run" if self.record_file == runs.RUN_FILE else "study"


# --------------------------------------------------------------------------- identity
def roundtrip(value: Any) -> Any:
    """``value`` as it reads back from JSON, so a recorded key compares equal to the one computed now."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def identity(key: Any) -> dict[str, Any]:
    """What an entry must match to be restored: the run's key (data hash included) and the run format."""
    return {"key": portable(roundtrip(key)), "run_format": paths.RUN_FORMAT}


def portable(value: Any) -> Any:
    """``value`` with the paths that name this checkout written relative to it, so a clone elsewhere finds its runs.

    A key holds the paths its run read: a shared tokenizer under ``results/`` (the merging study's), a file
    in the repository, the data. Under ``results/`` or the checkout they are the same files wherever the
    checkout is, and the data's content is in the key too (``data_sha256``), so its location is dropped
    (``runs.by_content``, as a run's reuse compares keys).
    A path outside both (a model directory) stays as it is: another location may hold other weights.
    """
    if isinstance(value, dict):
        return runs.by_content({k: portable(v) for k, v in value.items()})
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str):
        for root, name in ((paths.results_root(), "<results>"), (paths.ROOT, "<repository>")):
            if value == str(root) or value.startswith(f"{root}/"):
                return name + value[len(str(root)):]
    return value


# A record or card names the paths of the machine it was written on (the data, the command, an adapter's run).
# An entry keeps them relative to the checkout, in the notation of :func:`portable`, and a restore writes them for
# this checkout again, so a restored record reads as one computed here would. Unlike :func:`portable` (a key), a path
# beside the checkout (the data in ``../shared``) is kept too, as ``<repository>/../...``: a record's path identifies
# nothing, and the reader learns where the rows lay relative to the code.
_ABSOLUTE = re.compile(r"(?<![^\s\"'=(`])/[^\s\"'`()]+")  # an absolute path in a string (a command holds several)
_PLACEHOLDER = re.compile(r"<(results|repository)>(/[^\s\"'`()]*)?")


def relative_paths(text: str, checkouts: Sequence[Path] | None = None) -> str:
    """``text`` with each absolute path under a checkout (default this one), its results or beside it written
    relative to it: ``<results>/...``, ``<repository>/...``, ``<repository>/../...``. Other paths (``/tmp``) stay."""
    roots = [Path(c) for c in checkouts] if checkouts else [paths.ROOT]
    results = [paths.results_root(), *(root / "results" for root in roots)]

    def relative(match: re.Match[str]) -> str:
        path = os.path.normpath(match[0])
        for root, name in [*((r, "<results>") for r in results), *((r, "<repository>") for r in roots),
                           *((r.parent, "<repository>/..") for r in roots if r.parent != r.parent.parent)]:
            if path == str(root) or path.startswith(f"{root}/"):
                return name + path[len(str(root)):]
        return match[0]

    return _ABSOLUTE.sub(relative, text)


def local_paths(text: str) -> str:
    """``text`` with the placeholders of :func:`relative_paths` written for this checkout (and its results)."""
    def local(match: re.Match[str]) -> str:
        root = paths.results_root() if match[1] == "results" else paths.ROOT
        return os.path.normpath(f"{root}{match[2] or ''}")

    return _PLACEHOLDER.sub(local, text)


def read_entry(entry: Path, name: str) -> Any:
    """An entry's JSON file with its paths written for this checkout (:func:`local_paths`)."""
    return json.loads(local_paths((Path(entry) / name).read_text(encoding="utf-8")))


def entry_id(key: Any, rel: str) -> str:
    """The entry's directory name: the hash of its identity, then of its path under results/<profile>.

    One computation may sit at two paths (the quantization study's full-precision run is the main run's
    configuration). Their logits are the same, but their timings and memory were measured by two processes,
    so each path keeps its own entry; a lookup for a path without one takes another path's (the same
    computation), so a study that moves a run still finds it.
    """
    return f"{runs.key_tag(identity(key))}-{runs.key_tag(rel)[:6]}"


def config_hash(key: Any) -> str:
    """The hash of the configuration alone (the key without the data's content hash), shown beside the data's."""
    inner = key.get("run_key", key) if isinstance(key, dict) else key
    if isinstance(inner, dict):
        inner = {k: v for k, v in inner.items() if k != runs.DATA_KEY}
    return runs.key_tag(inner)


# --------------------------------------------------------------------------- the archive directory
def manifest(profile: str) -> dict[str, Any]:
    """The profile's manifest (an empty one where nothing was archived), after :func:`check_archive_dir`."""
    root = check_archive_dir(profile)
    if not (root / MANIFEST).is_file():
        return {"written_by": WRITER, "archive_format": ARCHIVE_FORMAT, "profile": profile, "entries": {}}
    return read_json(root / MANIFEST)


def archived_runs(profile: str) -> dict[str, Path]:
    """Each archived entry of ``profile`` by the path its run had under ``results/<profile>/`` (``runs/main``, ...)."""
    root = paths.archive_dir(profile) / ENTRIES
    return {e["path"]: root / eid for eid, e in manifest(profile)["entries"].items()}


def check_archive_dir(profile: str) -> Path:
    """``archive/<profile>/`` if it is absent, empty or written by the archive command; else an ArchiveError.

    Read-only: every command that writes into the archive or restores from it calls this first, so a
    directory the project did not write is refused before anything is written, and never changed.
    """
    root = paths.archive_dir(profile)
    if root.exists() and not root.is_dir():
        raise ArchiveError(f"{root} is a file, not an archive directory; move it away, then rerun.")
    present = sorted(p.name for p in root.iterdir() if p.name != runs.LOCK_FILE) if root.is_dir() else []
    if not present:
        return root
    stranger = [n for n in present if n not in (MANIFEST, ENTRIES, STUDIES) and not n.startswith(f".{MANIFEST}.")]
    data = None
    if (root / MANIFEST).is_file():
        try:
            data = read_json(root / MANIFEST)
        except ValueError:
            data = None
    if stranger or not isinstance(data, dict) or data.get("written_by") != WRITER:
        shown = ", ".join(stranger[:5]) or MANIFEST
        raise ArchiveError(f"{root} was not written by `{WRITER}` ({shown}); it is never changed or read: move it "
                           f"away (or point LORA_AGNEWS_ARCHIVE elsewhere), then rerun.")
    if data.get("archive_format") != ARCHIVE_FORMAT or data.get("profile") != profile:
        raise ArchiveError(f"{root / MANIFEST} is archive format {data.get('archive_format')} of profile "
                           f"{data.get('profile')!r}; this version reads format {ARCHIVE_FORMAT} of {profile!r}: "
                           f"move it away, then archive the profile again.")
    return root


def entry_dir(profile: str, key: Any, rel: str) -> Path | None:
    """The entry of ``key`` archived from ``rel`` (else from another path), or None; its recorded identity is
    checked, not only its name."""
    root = paths.archive_dir(profile)
    path = root / ENTRIES / entry_id(key, rel)
    if not (path / ENTRY_FILE).is_file():
        same = sorted(p for p in (root / ENTRIES).glob(f"{runs.key_tag(identity(key))}-*") if (p / ENTRY_FILE).is_file())
        if not same:
            return None
        path = same[0]
    check_archive_dir(profile)
    if read_json(path / ENTRY_FILE).get("identity") != identity(key):
        raise ArchiveError(f"{path / ENTRY_FILE} does not hold the identity its name stands for (edited by hand?); "
                           f"move {path} away and archive the run again.")
    return path


# --------------------------------------------------------------------------- what a profile's results hold
def sources(profile: str) -> list[Source]:
    """Every complete run (and merging-study model) under ``results/<profile>/runs`` with its recorded key."""
    results = paths.results_dir(profile)
    found = [Source(d, str(d.relative_to(results)), runs.RUN_FILE, (runs.read_record(d) or {}).get("run_key"))
             for d in runs.complete_runs(paths.runs_dir(profile))]
    for name in STUDY_RECORDS:
        for record in sorted(paths.runs_dir(profile).rglob(name)):
            d = record.parent
            if any(p.startswith(".") for p in d.relative_to(results).parts) or \
                    not all((d / f).is_file() for f in STUDY_FILES[name]):
                continue
            try:
                key = read_json(record).get("key")
            except ValueError:
                continue
            found.append(Source(d, str(d.relative_to(results)), name, key))
    return [s for s in found if hashed(s.key)]


def hashed(key: Any) -> bool:
    """Whether ``key`` holds the data's content hash: a run recorded before it was kept cannot say which rows it
    saw, so it is never archived (retrain it to archive it)."""
    if isinstance(key, dict) and "run_key" in key:
        return hashed(key["run_key"])
    if isinstance(key, dict) and "run_keys" in key:
        return bool(key["run_keys"]) and all(hashed(k) for k in key["run_keys"])
    return isinstance(key, dict) and bool(key.get(runs.DATA_KEY))


def keeps_adapter(rel: str) -> bool:
    """Whether the run at ``rel`` (under results/<profile>) is archived with its adapter (:data:`KEPT_ADAPTERS`)."""
    inner = rel.removeprefix("runs/")
    return any(fnmatch.fnmatch(inner, pattern) for pattern in KEPT_ADAPTERS)


def provenance(source: Source) -> dict[str, Any]:
    """Where, when and by what the run was computed, from its record (this machine's where the record has none
    and was written on this host), and how long it took."""
    import socket

    record = read_json(source.path / source.record_file)
    if RESTORED in record:  # archived again from a restore: its first computation is what counts
        return record[RESTORED]["computed"]
    metrics = read_json(source.path / runs.METRICS_FILE) if (source.path / runs.METRICS_FILE).is_file() else {}
    here = record.get("host") == socket.gethostname() or source.kind == "study"
    return {"date": record.get("finished") or time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                             time.gmtime(source.path.joinpath(source.record_file)
                                                                         .stat().st_mtime)),
            "machine": record.get("machine") or (hardware.machine() if here else {"cpu": "unknown", "cpu_kind": "unknown",
                                                                                "gpu": "unknown"}),
            "device": record.get("device"), "git_commit": record.get("git_commit") or runs.git_commit(),
            "versions": record.get("versions") or runs.library_versions(),
            "wall_seconds": metrics.get("train_seconds"), "command": record.get("command")}


def machine_line(computed: dict[str, Any]) -> str:
    """``<date> on <CPU model> (<kind>)`` or ``... on <GPU>``: the stamp's words for where a run was computed."""
    m = computed.get("machine") or {}
    where = m.get("gpu") if m.get("gpu") not in (None, "none", "unknown") else \
        f"{m.get('cpu', 'unknown')} ({m.get('cpu_kind', 'unknown')})"
    return f"{str(computed.get('date', 'unknown'))[:10]} on {where}"


# --------------------------------------------------------------------------- writing
def archive_profile(profile: str) -> dict[str, Any]:
    """Add every complete run of ``results/<profile>`` not yet archived to ``archive/<profile>``; a summary.

    Entries already there are kept as they are (never overwritten), so sittings on several machines add up.
    Each entry is written to a temporary directory and renamed into place, then the manifest is rewritten
    atomically: an interrupted call leaves a valid archive.
    """

    load(profile)  # an unknown profile: ConfigError naming the profiles, before anything is written
    root = check_archive_dir(profile)
    found = sources(profile)
    if not found:
        raise ArchiveError(f"results/{profile} holds no complete run to archive; run "
                           f"`python -m lora_agnews run --profile {profile}` first.")
    with _writing(root):
        return _archive_locked(profile, root, found)


@contextlib.contextmanager
def _writing(root: Path) -> Iterator[None]:
    """Hold ``root``'s lock while writing: two archive commands would each rewrite the manifest without the other's."""
    lock = runs.RunLock(root)
    try:
        lock.acquire()
    except runs.RunError:
        raise ArchiveError(f"{root} is being written by another `{WRITER}` process; wait for it, then rerun.") from None
    try:
        yield
    finally:
        lock.release()


def _archive_locked(profile: str, root: Path, found: list[Source]) -> dict[str, Any]:
    data = manifest(profile)
    added = 0
    for source in found:
        eid = entry_id(source.key, source.rel)
        if eid not in data["entries"]:
            data["entries"][eid] = _write_entry(root / ENTRIES / eid, source, keeps_adapter(source.rel))
            added += 1
            write_json(data, root / MANIFEST)
    size = directory_size(root)
    return {"profile": profile, "entries": len(data["entries"]), "added": added, "bytes": size, "path": root}


def drop_superseded(profile: str) -> list[dict[str, Any]]:
    """Remove the archived entries whose path now holds another computation that is archived too; those removed.

    Only these: an entry is stale also where ``results/<profile>`` merely lacks its run (a partial results tree, a
    study not run in this sitting), and such an entry may be the only copy of hours of training, so it is kept.
    A superseded entry's replacement is in the archive, so nothing is lost but the old computation (git keeps it).
    """
    root = check_archive_dir(profile)
    with _writing(root):
        data = manifest(profile)
        here = {s.rel: s for s in sources(profile)}
        dropped = [e for e in stale_entries(profile)
                   if e["path"] in here and entry_id(here[e["path"]].key, e["path"]) in data["entries"]]
        for entry in dropped:
            shutil.rmtree(root / ENTRIES / entry["id"])  # an entry the archive command wrote (check_archive_dir)
            del data["entries"][entry["id"]]
            write_json(data, root / MANIFEST)
    return dropped


def keep_studies(profile: str, names: tuple[str, ...]) -> list[str]:
    """Copy the study results ``names`` present in ``results/<profile>`` into ``archive/<profile>/studies``.

    Called by the archive command after its runs are archived, so the copies are the results of those runs
    (a file the results lack is left as it was). Each is replaced atomically, with the paths of this checkout
    written relative to it (:func:`portable`); the manifest records when, and in which ``RESULTS_FORMAT``.
    """
    root = check_archive_dir(profile)
    kept = [name for name in names if (paths.results_dir(profile) / name).is_file()]
    if not kept:
        return []
    with _writing(root):
        (root / STUDIES).mkdir(parents=True, exist_ok=True)
        for name in kept:
            write_json(portable(read_json(paths.results_dir(profile) / name)), root / STUDIES / name)
        data = manifest(profile)
        data["studies"] = {"written": runs.now(), "results_format": paths.RESULTS_FORMAT,
                           "files": sorted({*data.get("studies", {}).get("files", []), *kept})}
        write_json(data, root / MANIFEST)
    return kept


def _write_entry(target: Path, source: Source, adapter: bool) -> dict[str, Any]:
    """One entry: the run's files, its adapter where kept, and entry.json; its manifest summary."""
    keep = source.kind == "run" and adapter and (source.path / ADAPTER).is_dir()
    names = RUN_FILES if source.kind == "run" else (source.record_file, *STUDY_FILES[source.record_file])
    if target.exists():  # complete (renamed into place whole), written by a call interrupted before its manifest
        info = read_json(target / ENTRY_FILE) if (target / ENTRY_FILE).is_file() else {}
        if info.get("identity") != identity(source.key):
            raise ArchiveError(f"{target} is not the entry its name stands for (edited by hand?); move it away, "
                               f"then rerun.")
        return {"kind": info["kind"], "adapter": info["adapter"], "computed": machine_line(info["computed"]),
                "path": info["path"]}
    computed = provenance(source)
    with runs.atomic_directory(target) as tmp:
        for name in names:
            if (source.path / name).is_file():
                shutil.copy2(source.path / name, tmp / name)
        if keep:
            shutil.copytree(source.path / ADAPTER, tmp / ADAPTER)
        for text in (p for p in tmp.rglob("*") if p.suffix in TEXT_FILES):  # no path of this machine in the entry
            paths.atomic_write_text(relative_paths(text.read_text(encoding="utf-8")), text)
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        key = source.key
        computed = json.loads(relative_paths(json.dumps(computed)))
        write_json({"identity": identity(key), "config_hash": config_hash(key),
                    runs.DATA_KEY: (key.get(runs.DATA_KEY) if isinstance(key, dict) else None),
                    "run_format": paths.RUN_FORMAT, "kind": source.kind, "record_file": source.record_file,
                    "path": source.rel, "adapter": keep, "computed": computed, "archived": runs.now(),
                    "archived_by": runs.git_commit(), "files": files}, tmp / ENTRY_FILE)
    return {"kind": source.kind, "adapter": keep, "computed": machine_line(computed), "path": source.rel}


def write_entry(target: Path, source: Source, adapter: bool) -> dict[str, Any]:
    """One entry of ``source`` in ``target`` (any directory: a worker writes one in its own temporary tree, and the
    driver adds it with :func:`add_entry`); its manifest summary."""
    return _write_entry(target, source, adapter)


def add_entry(profile: str, entry: Path) -> str:
    """Add an entry written elsewhere (by a worker of lora_agnews.engines) to ``archive/<profile>``; its id.

    Its identity must be the one its id stands for in this version (the run format included), else it is refused.
    Its adapter is kept only where :data:`KEPT_ADAPTERS` says, as ``archive`` would; an entry already there is kept.
    """
    info = read_json(Path(entry) / ENTRY_FILE)
    eid = entry_id(info["identity"]["key"], info["path"])
    if Path(entry).name != eid or info["identity"] != identity(info["identity"]["key"]):
        raise ArchiveError(f"{entry} is not an entry of this version's identity (run format {paths.RUN_FORMAT}); "
                           f"compute it again with this version of lora_agnews.")
    root = check_archive_dir(profile)
    with _writing(root):
        data = manifest(profile)
        if eid in data["entries"]:
            return eid
        keep = bool(info["adapter"]) and keeps_adapter(info["path"])
        with runs.atomic_directory(root / ENTRIES / eid) as tmp:
            for name in info["files"]:
                if keep or not name.startswith(f"{ADAPTER}/"):
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(entry) / name, tmp / name)
            files = {n: size for n, size in info["files"].items() if keep or not n.startswith(f"{ADAPTER}/")}
            write_json({**info, "adapter": keep, "files": files}, tmp / ENTRY_FILE)
        data["entries"][eid] = {"kind": info["kind"], "adapter": keep, "computed": machine_line(info["computed"]),
                                "path": info["path"]}
        write_json(data, root / MANIFEST)
    return eid


def restore_entry(entry: Path, run_dir: Path, record_file: str, current: dict[str, Any],
                  config: dict[str, Any] | None = None) -> None:
    """Copy ``entry`` into the empty ``run_dir``, its record last, as a restore does (:func:`restore_run`)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    _copy_entry(Path(entry), Path(run_dir), record_file, roundtrip(current), config)


def directory_size(root: Path) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- restoring
def restore_run(run_dir: Path, cfg: Config) -> bool:
    """Copy the archived run of ``cfg`` into the empty ``run_dir`` (pipeline-owned, under results/<profile>/runs).

    True when restored; False when the archive holds no entry of this identity or ``run_dir`` is not one the
    pipeline names (a user's ``--out`` is trained, never filled from the archive). The record is written last,
    with :data:`RESTORED` saying where it came from: an interrupted copy leaves no record, so nothing half-copied
    is ever read as a run.
    """
    entry = restorable(run_dir, cfg)
    if entry is None:
        return False
    _copy_entry(entry, Path(run_dir), runs.RUN_FILE, {"run_key": runs.run_key(cfg), "config": cfg.to_dict()},
                cfg.to_dict())
    return True


def restorable(run_dir: Path, cfg: Config) -> Path | None:
    """The entry :func:`restore_run` would copy into ``run_dir``, or None (read-only)."""
    rel = _under_runs(run_dir, cfg.profile)
    return None if rel is None else entry_dir(cfg.profile, runs.run_key(cfg), rel)


def _under_runs(run_dir: Path, profile: str) -> str | None:
    """``run_dir`` relative to results/<profile> when it is under results/<profile>/runs (the pipeline's), else None."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_relative_to(paths.runs_dir(profile).resolve()):
        return None
    return str(run_dir.relative_to(paths.results_dir(profile).resolve()))


def restore_study(run_dir: Path, profile: str, current: dict[str, Any], record_file: str) -> bool:
    """Copy the archived merging-study model whose record holds ``current["key"]`` into ``run_dir`` (only under
    results/<profile>/runs); its record takes ``current`` (key and configuration). True when restored."""
    rel = _under_runs(run_dir, profile)
    entry = None if rel is None else entry_dir(profile, current["key"], rel)
    if entry is None:
        return False
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    _copy_entry(entry, Path(run_dir), record_file, roundtrip(current))
    return True


def _copy_entry(entry: Path, run_dir: Path, record_file: str, current: dict[str, Any],
                config: dict[str, Any] | None = None) -> None:
    """The entry's files into ``run_dir``, its record last. The record (and the adapter's configuration) take the
    key and configuration of the run asked for (the same computation: their identities are equal), so paths name
    this checkout's files, and the archived key is kept beside them as :data:`RESTORED`'s ``key``."""
    from .adapter import CONFIG_FILE

    info = read_json(entry / ENTRY_FILE)
    for name in info["files"]:
        if name == record_file or name.startswith(f"{ADAPTER}/"):
            continue
        shutil.copy2(entry / name, run_dir / name)
    if (entry / ADAPTER).is_dir():
        if (run_dir / ADAPTER).exists():
            shutil.rmtree(run_dir / ADAPTER)
        shutil.copytree(entry / ADAPTER, run_dir / ADAPTER)
        if config is not None and (run_dir / ADAPTER / CONFIG_FILE).is_file():
            write_json({**read_json(run_dir / ADAPTER / CONFIG_FILE), "config": config}, run_dir / ADAPTER / CONFIG_FILE)
    for name in (n for n in info["files"] if n.endswith(".json") and n != record_file):  # this checkout's paths again
        paths.atomic_write_text(local_paths((run_dir / name).read_text(encoding="utf-8")), run_dir / name)
    record = read_entry(entry, record_file)
    archived_key = record.get("run_key", record.get("key"))
    record.update(current)
    record[RESTORED] = {"from": str(entry.relative_to(entry.parents[2])), "at": runs.now(),
                        "computed": info["computed"], "adapter": bool(info["adapter"]), "key": archived_key}
    write_json(record, run_dir / record_file)
    say(f"{run_dir.name}: restored from the archive ({record[RESTORED]['from']}), computed "
        f"{machine_line(info['computed'])}")


# --------------------------------------------------------------------------- what a sitting did
def sitting(profile: str, since: float) -> dict[str, Any]:
    """Runs of ``results/<profile>`` trained since ``since`` (a ``time.time()``), every run there that was restored
    from the archive (whenever: a later pipeline run reuses it, and the stamp must still say it was computed
    elsewhere) with where it was computed, and the archive's stale entries: what the one line and the stamp say."""
    restored, trained, computed = [], [], []
    for source in sources(profile):
        record_path = source.path / source.record_file
        record = read_json(record_path)
        if RESTORED in record:
            restored.append(source.rel)
            computed.append(machine_line(record[RESTORED]["computed"]))
        elif record_path.stat().st_mtime >= since:
            trained.append(source.rel)
    return {"restored": len(restored), "trained": len(trained), "restored_runs": restored,
            "computed": sorted(set(computed)), "stale": stale_entries(profile)}


def stale_entries(profile: str) -> list[dict[str, Any]]:
    """Archived entries no run of ``results/<profile>`` has (the configuration, the data or the format changed),
    each with what differs from the run now at its path."""
    data = manifest(profile)
    here = {s.rel: s for s in sources(profile)}
    used = {runs.key_tag(identity(s.key)) for s in here.values()}  # a computation in use at any path is not stale
    out = []
    for eid, summary in sorted(data["entries"].items()):
        if eid.split("-")[0] in used:
            continue
        info = read_json(paths.archive_dir(profile) / ENTRIES / eid / ENTRY_FILE)
        out.append({"id": eid, "path": summary["path"], "changed": _changed(info, here)})
    return out


def _changed(info: dict[str, Any], here: dict[str, Source]) -> str:
    """What differs between an archived entry and the run now at its path, in words."""
    old = info["identity"]
    if old.get("run_format") != paths.RUN_FORMAT:
        return f"run format {old.get('run_format')} (this version writes {paths.RUN_FORMAT})"
    current = here.get(info["path"])
    if current is None:
        return f"no run at {info['path']} now"
    a, b = old["key"], portable(roundtrip(current.key))
    if isinstance(a, dict) and isinstance(b, dict) and "run_key" in a and "run_key" in b:
        a, b = a["run_key"], b["run_key"]
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "its key"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "differs in " + ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" if k != runs.DATA_KEY else "the data"
                                     for k in keys[:6])


def sitting_line(profile: str, summary: dict[str, Any]) -> str:
    """The pipeline's one line per profile: how many runs were restored and how many trained."""
    line = (f"archive: profile {profile}: {summary['restored']} run(s) restored from {paths.archive_dir(profile)}, "
            f"{summary['trained']} trained here")
    if summary["computed"]:
        line += f" (restored runs computed {'; '.join(summary['computed'])})"
    if summary["stale"]:
        line += f"; {len(summary['stale'])} stale entr{'y' if len(summary['stale']) == 1 else 'ies'} not used"
    return line


# --------------------------------------------------------------------------- training
# Training with the Hugging Face Trainer: seeded, checkpointed, resumable, fast by default.
#
# Speed choices (each a config switch): dynamic padding, length-grouped batches, bf16 autocast
# where the hardware has bf16 units (CUDA, AMX/AVX512-BF16 CPUs), TF32 and fused AdamW on
# CUDA, SDPA attention, merged LoRA weights at evaluation, token ids cached on disk.
# Model selection uses the validation split only; the test split is scored once at the end.

@dataclass
class Prepared:
    """Everything training needs, built once (the notebooks show parts of it)."""

    cfg: Config
    splits: Splits
    tokenizer: Any
    train: TokenizedDataset
    validation: TokenizedDataset
    test: TokenizedDataset
    model: Any
    breakdown: dict[str, Any]


def prepare(cfg: Config, splits: Splits | None = None) -> Prepared:
    """Data, tokenizer, model and parameter count; refuses an over-budget config before training."""
    from transformers import set_seed

    check_max_length(cfg, model_config(cfg))  # before the data is read or its tokens cached
    set_seed(cfg.seed)
    splits = splits or load_splits(cfg)
    width = splits.label_width  # label sets become indicator rows
    if width:
        from .tasks.label_sets import check_training_config

        check_training_config(cfg)
    tokenizer = build_tokenizer(cfg, splits.train["text"].tolist())
    extra = teacher_extra(cfg, splits) if cfg.distill_logits else None
    train_ds = encode(splits.train, tokenizer, cfg.max_length, extra, num_labels=width)
    val_ds = by_length(encode(splits.validation, tokenizer, cfg.max_length, num_labels=width))
    test_ds = encode(splits.test, tokenizer, cfg.max_length, num_labels=width)
    model = build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                        total_steps=total_steps(cfg, len(train_ds)))

    check_same_labels(splits.labels, model_labels(model), f"the data ({splits.task.name})", "the model's head")
    breakdown = parameter_breakdown(model)
    check_budget(breakdown, cfg)
    return Prepared(cfg, splits, tokenizer, train_ds, val_ds, test_ds, model, breakdown)


def total_steps(cfg: Config, n_train: int) -> int:
    """Optimizer steps of the whole run (AdaLoRA's rank schedule is laid out over them)."""
    world = max(1, torch.distributed.get_world_size() if torch.distributed.is_initialized() else _env_world())
    return max(1, math.ceil(cfg.epochs * math.ceil(n_train / (cfg.batch_size * world))))


def by_length(dataset: TokenizedDataset) -> TokenizedDataset:
    """The same examples in length order: the Trainer's validation batches then pad to similar lengths.

    Validation accuracy does not depend on the order; unsorted, a batch of 128 pads to its longest
    text (about twice the mean on AG News), so every evaluation during training costs twice the work.
    """
    order = np.argsort(dataset.lengths, kind="stable")
    return TokenizedDataset([dataset.input_ids[i] for i in order], [dataset.labels[i] for i in order],
                            {k: v[order] for k, v in dataset.extra.items()})


def run_facts(cfg: Config, splits: Splits) -> dict[str, Any]:
    """What a reader must know to read this run's numbers: the rows used and whether the encoder was pretrained.

    Recorded in ``run.json`` and ``metrics.json`` so the book's and the report's stamp is derived
    from the run itself, never re-guessed from the configuration.
    """
    return {"pretrained": cfg.init == "pretrained", "data_source": splits.source, **splits.facts()}


def teacher_extra(cfg: Config, splits: Splits) -> dict[str, np.ndarray]:

    return {"teacher_logits": teacher_logits_for(cfg.distill_logits, splits.train["text"].tolist(), splits.labels)}


# --------------------------------------------------------------------------- Trainer
class SeededLengthGroupedSampler(torch.utils.data.Sampler):
    """Length-grouped batches in an order that depends on (seed, epoch) only.

    transformers' LengthGroupedSampler draws from the global torch RNG. A run resumed
    mid-epoch reaches the sampler with a different global RNG state than the uninterrupted
    run, so the resumed epoch would shuffle differently and the skipped batches would not be
    the ones already seen; under DDP every rank must also draw the same order, because
    accelerate shards one batch sequence between ranks. The Trainer (through accelerate)
    calls ``set_epoch`` before every epoch, also on the batch-skipping loader of a resume.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths = list(lengths)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _trainer_class() -> type:
    from transformers import Trainer

    class LoraTrainer(Trainer):
        """Trainer with a length-grouped sampler and an optional distillation loss."""

        def __init__(self, *args: Any, group_by_length: bool = True, distill: tuple[float, float] | None = None,
                     **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._group = group_by_length
            self._distill = distill

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not self._group:
                return super()._get_train_sampler(dataset) if train_dataset is not None else super()._get_train_sampler()
            return SeededLengthGroupedSampler(dataset.lengths,
                                              self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                              seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
            teacher = inputs.pop("teacher_logits", None)
            if teacher is None or self._distill is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
            alpha, temperature = self._distill
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            hard = F.cross_entropy(logits, labels, label_smoothing=self.args.label_smoothing_factor)
            soft = F.kl_div(F.log_softmax(logits / temperature, dim=-1),
                            F.log_softmax(teacher.float() / temperature, dim=-1),
                            log_target=True, reduction="batchmean") * temperature ** 2
            loss = (1.0 - alpha) * hard + alpha * soft
            return (loss, outputs) if return_outputs else loss

    return LoraTrainer


def _accuracy(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}


def _micro_f1(eval_pred: Any) -> dict[str, float]:
    """Model selection for label sets: validation micro-F1 at its best global threshold."""

    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"micro_f1": best_micro_f1(np.asarray(logits), np.asarray(labels))}


def training_arguments(cfg: Config, out_dir: Path, n_train: int, device: torch.device, precision: str,
                       metric: str = "accuracy") -> Any:
    from transformers import TrainingArguments

    world = max(1, torch.distributed.get_world_size() if torch.distributed.is_initialized() else _env_world())
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * world)))
    eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
    cuda = device.type == "cuda"
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,
        lr_scheduler_type=cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
        label_smoothing_factor=cfg.label_smoothing,
        eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=metric, greater_is_better=True,
        logging_strategy="steps", logging_steps=max(1, steps_per_epoch // 10), logging_first_step=True,
        bf16=precision == "bf16", fp16=precision == "fp16", tf32=True if cuda else None,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        torch_compile=cfg.compile,
        seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
        report_to=cfg.report_targets or "none",
        disable_tqdm=not interactive(),
        save_only_model=False,
        ddp_find_unused_parameters=False,
    )


# TensorBoard's event files, inside the run directory: a stable place (the Trainer's default is a
# timestamped folder under checkpoints/), removed with the run on --overwrite, and found by
# `tensorboard --logdir results/` together with every other run's.
TENSORBOARD_DIR = runs.TENSORBOARD_DIR


def _tensorboard_callback(log_dir: Path, purge_step: int) -> Any:
    """The Trainer's TensorBoard integration, writing to ``log_dir`` and dropping steps a resume repeats.

    A resumed run starts again at its last checkpoint's step, so the interrupted attempt's events after
    that step would show twice. ``purge_step`` (checkpoint step + 1; 0 for a fresh start) marks them as
    discarded, the way TensorBoard expects a restarted job to do.
    """
    from transformers.integrations import TensorBoardCallback

    class RunTensorBoard(TensorBoardCallback):
        def __init__(self) -> None:
            super().__init__()
            self.logging_dir = str(log_dir)

        def _init_summary_writer(self, args: Any) -> None:
            self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=purge_step)

    return RunTensorBoard()


def _checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])  # checkpoint-<global step>


def _env_world() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def fit(prep: Prepared, out_dir: Path) -> Any:
    """Run the Trainer (resuming from the last checkpoint in ``out_dir`` if there is one)."""
    from transformers import EarlyStoppingCallback

    cfg = prep.cfg
    runs.refuse_training(out_dir, cfg)  # --restore-only: every training run and study model passes here
    device = device_for(cfg)
    precision = resolve_precision(cfg, device)
    multi = prep.splits.task.multi_label
    args = training_arguments(cfg, out_dir, len(prep.train), device, precision, "micro_f1" if multi else "accuracy")
    callbacks = [EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping)] if cfg.early_stopping else []
    callbacks += METHODS[cfg.method].callbacks(prep.model)
    distill = (cfg.distill_alpha, cfg.distill_temperature) if cfg.distill_logits else None
    trainer = _trainer_class()(
        model=prep.model, args=args, train_dataset=prep.train, eval_dataset=prep.validation,
        data_collator=PadCollator(prep.tokenizer.pad_token_id, multiple=pad_multiple(cfg.pad_multiple, device)),
        processing_class=prep.tokenizer, compute_metrics=_micro_f1 if multi else _accuracy, callbacks=callbacks,
        group_by_length=cfg.group_by_length, distill=distill)
    # Rank 0 picks the newest complete checkpoint (removing cut-off ones); all ranks resume from it.
    last = _on_main(lambda: runs.last_checkpoint(out_dir / runs.CHECKPOINTS))
    if last:
        say(f"resuming from {Path(last).name}")
    if "tensorboard" in trainer.args.report_to:  # a list by now ("all" resolved to the installed integrations)
        from transformers.integrations import TensorBoardCallback

        trainer.remove_callback(TensorBoardCallback)
        purge = _checkpoint_step(last) + 1 if last else 0
        trainer.add_callback(_tensorboard_callback(out_dir / TENSORBOARD_DIR, purge))
    trainer.train(resume_from_checkpoint=last)
    return trainer


def train_owned(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Train into a run directory the pipeline names itself (``results/<profile>/runs/...``).

    There a complete run of this configuration is reused, and a run of another configuration
    (a changed parameter, edited data, or text prepared by an older ``DATA_FORMAT``) is moved aside
    to :func:`lora_agnews.core.paths.superseded_dir` instead of refused: the user did not choose the
    directory, and the old run may hold hours of training. A live run is still never touched.
    ``--out`` directories that a user names go through :func:`train`, which refuses unless told to overwrite.
    """
    return train(cfg, run_dir, owned=True)


def train(cfg: Config, out_dir: Path, overwrite: bool = False, splits: Splits | None = None,
          owned: bool = False) -> dict[str, Any]:
    """Train, save the adapter, score the test split once, write ``metrics.json``; return the metrics.

    Rerunning with the same ``out_dir`` reuses a complete run and resumes an interrupted one.
    Nothing in ``out_dir`` is touched until the config, the data and the budget were checked,
    so a refused call never costs an earlier run. The directory is locked (:class:`runs.RunLock`)
    before anything is checked, so a second process training into it is refused at once. Under
    torchrun / accelerate launch only rank 0 holds the lock and writes the record, the adapter and
    the metrics; other ranks return ``{}``.
    """

    quiet_libraries()
    require_trackers(cfg)  # a report_to integration that is not installed: refused before out_dir is touched

    require_quantization(cfg, device_for(cfg))  # quantize without a working bitsandbytes, or a method that cannot: refused here
    out_dir = Path(out_dir).resolve()
    _init_distributed(cfg)
    lock = runs.RunLock(out_dir)
    _on_main(lock.acquire)
    try:
        return _train_locked(cfg, out_dir, overwrite, splits, owned)
    finally:
        lock.release()


def _train_locked(cfg: Config, out_dir: Path, overwrite: bool, splits: Splits | None, owned: bool) -> dict[str, Any]:
    state = _on_main(lambda: runs.check(out_dir, cfg, overwrite=overwrite, owned=owned))
    if state == "complete":
        say(f"{out_dir} already holds this complete run; reusing it (pass --overwrite to retrain)")
        return runs.load_complete(out_dir) if _is_main_process() else {}
    if state in ("new", "aside") and _on_main(lambda: _restore(out_dir, cfg, state)):
        return runs.load_complete(out_dir) if _is_main_process() else {}
    prep = prepare(cfg, splits)  # config, data and budget errors surface here, before out_dir is touched
    device = device_for(cfg)
    record = _on_main(lambda: _claim(out_dir, cfg, state, device, run_facts(cfg, prep.splits)))
    if state == "resume":
        say(f"{out_dir} holds an unfinished run of this configuration (attempt {record['attempts']}); resuming it")
    try:
        metrics = _train_and_score(prep, out_dir, device)
    except BaseException as exc:
        if _is_main_process():
            runs.finish(out_dir, record, exc)
        raise
    if _is_main_process():
        runs.finish(out_dir, record)
    return metrics


def _restore(out_dir: Path, cfg: Config, state: str) -> bool:
    """The archived run of ``cfg`` copied into ``out_dir`` instead of training it again (only directories under
    results/<profile>/runs, the pipeline's: a user's ``--out`` is trained as asked); False when there is none."""

    if restorable(out_dir, cfg) is None:
        return False
    runs.claim(out_dir, state)
    return restore_run(out_dir, cfg)


def _claim(out_dir: Path, cfg: Config, state: str, device: torch.device, facts: dict[str, Any]) -> dict[str, Any]:
    runs.refuse_training(out_dir, cfg)  # as fit does, but before a record is written: a refusal leaves no run behind
    runs.claim(out_dir, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    return runs.start(out_dir, cfg, device, facts)


# --------------------------------------------------------------------------- distributed launches
def _init_distributed(cfg: Config) -> None:
    """Join the process group early under torchrun / accelerate launch (WORLD_SIZE > 1).

    The run directory must be claimed by rank 0 before any rank looks for checkpoints, which
    needs a collective before the Trainer exists; the Trainer's accelerate state then reuses
    this group (gloo on CPU, nccl on CUDA).
    """
    import atexit
    import os

    if runs.world_size() <= 1 or not torch.distributed.is_available() or torch.distributed.is_initialized():
        return
    cuda = device_for(cfg).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    atexit.register(_destroy_distributed)


def _destroy_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _on_main(fn: Any) -> Any:
    """``fn()`` on rank 0 only; its result (or its exception) is shared with every rank."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
            or torch.distributed.get_world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if torch.distributed.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # re-raised on every rank, so no rank waits forever
            box[0] = ("error", exc)
    torch.distributed.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def _is_main_process() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return runs.rank() == 0


def process_peak_rss() -> int | None:
    """The peak resident memory of this process so far, in bytes (Linux and macOS; None elsewhere).

    A run's own figure only when it is the process's only work (``python -m lora_agnews train``, the
    quantization study's runs); in a notebook's kernel it includes whatever ran there before.
    """
    try:
        import resource
        import sys
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def process_rss() -> int | None:
    """The resident memory of this process now, in bytes (Linux; None elsewhere).

    Beside the peak: a quantized base is quantized after its float32 checkpoint is loaded, so the peak
    includes that checkpoint once, while the memory held during training and after it does not.
    """
    import os

    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def scoring_model(model: torch.nn.Module, cfg: Config, quiet: bool = False) -> torch.nn.Module:
    """The model a run's test split is scored with: LoRA merged into the base where ``merge_eval`` allows.

    The audit scores a reloaded adapter through this same function, so a run and its audit compute alike.
    """
    if cfg.merge_eval and cfg.quantize != "none":
        if not quiet:
            say(f"note: scoring on the {cfg.quantize} base as trained (merging would dequantize it; the saved "
                f"adapter rebuilds this quantized base)")
    elif cfg.merge_eval:
        try:
            return merge(model, cfg.method)
        except MergeError as exc:
            if not quiet:
                say(f"note: scoring unmerged ({exc})")
    return model


@dataclass(frozen=True)
class Rescore:
    """A complete run's test split scored again from its saved adapter alone, as the run scored it."""

    cfg: Config
    splits: Splits
    logits: np.ndarray
    labels: np.ndarray
    precision: str


def rescore(run_dir: Path | str, device: str | torch.device = "cpu", rows: np.ndarray | None = None) -> Rescore:
    """Rebuild the run's model from ``run_dir/adapter`` and score its test rows through ``scoring_model``.

    The one re-scoring path: the audit and the evaluation chapter both call it, so "the saved artifact
    reproduces the run" means the same thing wherever it is stated. ``rows``: positions of the test rows to score
    (all by default; the audit of a restore scores a sample). The precision is the run's, or the one a
    :func:`~lora_agnews.core.precision.scoring_in` block around the call chose.
    """
    from .adapter import load_adapter

    dev = torch.device(device)
    model, tokenizer, cfg = load_adapter(Path(run_dir) / "adapter", dev)
    splits = load_splits(cfg)
    frame = splits.test if rows is None else splits.test.iloc[np.asarray(rows)]
    test = encode(frame, tokenizer, cfg.max_length, num_labels=splits.label_width)
    precision = resolve_precision(cfg, dev)
    model = scoring_model(model, cfg, quiet=True).to(dev).eval()
    logits = predict_logits(model, test, tokenizer.pad_token_id, cfg.eval_batch_size, dev, precision,
                            multiple=cfg.pad_multiple)
    return Rescore(cfg, splits, logits, np.asarray(test.labels), precision)


def _train_and_score(prep: Prepared, out_dir: Path, device: torch.device) -> dict[str, Any]:
    cfg = prep.cfg
    say(f"training {cfg.model_name} ({prep.breakdown['total']:,} trainable parameters) on "
        f"{len(prep.train):,} examples, {cfg.epochs:g} epoch(s), device {device.type}")
    start = time.perf_counter()
    trainer = fit(prep, out_dir)
    train_seconds = time.perf_counter() - start
    if not trainer.is_world_process_zero():
        return {}
    model = trainer.model
    from .adapter import save_adapter, write_model_card

    check_layout(model)  # a 4-bit base bitsandbytes repacked would score a model the adapter cannot rebuild

    precision = resolve_precision(cfg, device)
    if prep.splits.task.multi_label:  # thresholds from validation, saved with the adapter, then test scored once
        from .adapter import evaluate_multi_label

        adapter_dir, metrics, logits, eval_seconds = evaluate_multi_label(prep, model, out_dir, device, precision,
                                                                          scoring_model)
    else:
        adapter_dir = save_adapter(model, prep.tokenizer, cfg, out_dir / "adapter")
        eval_model = scoring_model(model, cfg).to(device)
        say(f"scoring the test split ({len(prep.test):,} examples)")
        t0 = time.perf_counter()
        metrics, logits = evaluate_model(eval_model, prep.test, prep.tokenizer.pad_token_id, cfg.eval_batch_size,
                                         device, precision, progress=interactive(), multiple=cfg.pad_multiple,
                                         names=prep.splits.labels)
        eval_seconds = time.perf_counter() - t0
    history = trainer.state.log_history
    best_val = trainer.state.best_metric
    best_key = "best_validation_micro_f1" if prep.splits.task.multi_label else "best_validation_accuracy"
    metrics.update({
        "trainable_params": prep.breakdown["total"], "parameter_breakdown": prep.breakdown,
        "config": cfg.to_dict(), "split_sizes": prep.splits.sizes(), **run_facts(cfg, prep.splits),
        "best_validation_accuracy": None, best_key: float(best_val) if best_val is not None else None,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "train_seconds": train_seconds, "eval_seconds": eval_seconds, "precision": precision,
        "device": runs.device_description(device), "global_steps": trainer.state.global_step,
        "adapter_dir": adapter_dir.name,
        # validation passes inside training, reported apart from the optimisation itself
        "validation_seconds": float(sum(h.get("eval_runtime", 0.0) for h in history)),
    })
    if device.type == "cuda":
        metrics["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    metrics["process_peak_rss_bytes"] = process_peak_rss()
    metrics["process_rss_bytes"] = process_rss()  # now, after training and scoring: the steady state
    runs.save_arrays(out_dir / "test_predictions.npz", logits=logits, labels=np.asarray(prep.test.labels))
    write_json(history, out_dir / "history.json")
    write_json(metrics, out_dir / runs.METRICS_FILE)

    write_model_card(adapter_dir, cfg, metrics)
    if prep.splits.task.multi_label:
        say(f"test micro F1 {metrics['micro_f1']:.4f} (macro F1 {metrics['macro_f1']:.4f}, subset accuracy "
            f"{metrics['subset_accuracy']:.4f}) -> {out_dir / runs.METRICS_FILE}")
    else:
        say(f"test accuracy {metrics['accuracy']:.4f} (macro F1 {metrics['macro_f1']:.4f}) -> {out_dir / runs.METRICS_FILE}")
    return metrics
