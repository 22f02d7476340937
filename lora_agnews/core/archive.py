"""The archive of complete runs: ``archive/<profile>/``, committed, so runs outlive the machine that computed them.

A profile's base runs take hours on a CPU; the archive carries them from one sitting (or machine) to the next
and to a fresh clone. It is written only by ``python -m lora_agnews archive`` (:func:`archive_profile`) and
read only through :mod:`lora_agnews.core.restore`, which the training code asks before it
trains a pipeline-owned run: an entry whose identity matches the run asked for is copied into
``results/<profile>/`` instead of being trained again. Nothing else is ever taken from it.

Layout::

    archive/<profile>/MANIFEST.json        written_by, archive_format, profile, entries {id: summary}
    archive/<profile>/entries/<id>/        one run: entry.json (identity, provenance, files), the run's
                                           record, metrics, history, test logits and labels (npz, exact fp32),
                                           its adapter where a study reloads it (:data:`KEPT_ADAPTERS`)

An entry's identity is the key its record holds (for a training run: the configuration's run key with the
data's content hash, :func:`lora_agnews.core.runs.run_key`) and :data:`~lora_agnews.core.paths.RUN_FORMAT`;
its id is the hash of that identity, so a lookup is one path, and a changed parameter, edited data or a new
run format never finds an old entry: :func:`stale_entries` lists those with what changed.

Torch-free: the findings and the plan read the manifest without loading a model. May import ``hardware``,
``paths``, ``config`` and ``runs``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import hardware, paths, runs
from .config import load
from .paths import read_json, write_json

ARCHIVE_FORMAT = 1
MANIFEST = "MANIFEST.json"
ENTRIES = "entries"
ENTRY_FILE = "entry.json"
# the studies' own results (statistics.json, ...) as the pipeline computed them from the archived runs: the generated
# findings read them (lora_agnews.reporting.findings); a restore never does (the studies recompute them)
STUDIES = "studies"
WRITER = "python -m lora_agnews archive"
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


def relative_paths(text: str) -> str:
    """``text`` with each absolute path under this checkout, its results or beside it written relative to it:
    ``<results>/...``, ``<repository>/...``, ``<repository>/../...``. Other paths (``/tmp``) stay."""
    root = paths.ROOT
    places = [(paths.results_root(), "<results>"), (root / "results", "<results>"), (root, "<repository>")]
    if root.parent != root.parent.parent:
        places.append((root.parent, "<repository>/.."))

    def relative(match: re.Match[str]) -> str:
        path = os.path.normpath(match[0])
        for place, name in places:
            if path == str(place) or path.startswith(f"{place}/"):
                return name + path[len(str(place)):]
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


def kept_study(profile: str, name: str) -> Any:
    """A study result kept in ``archive/<profile>/studies`` with its paths written for this checkout, as a
    record's are (:func:`read_entry`); None where the archive keeps none."""
    root = paths.archive_dir(profile) / STUDIES
    return read_entry(root, name) if (root / name).is_file() else None


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
    record = read_json(source.path / source.record_file)
    if runs.RESTORED in record:  # archived again from a restore: its first computation is what counts
        return record[runs.RESTORED]["computed"]
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
        data = manifest(profile)
        added = 0
        for source in found:
            eid = entry_id(source.key, source.rel)
            if eid not in data["entries"]:
                data["entries"][eid] = write_entry(root / ENTRIES / eid, source, keeps_adapter(source.rel))
                added += 1
                write_json(data, root / MANIFEST)
    return {"profile": profile, "entries": len(data["entries"]), "added": added, "bytes": directory_size(root),
            "path": root}


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
    written relative to it (:func:`portable`, :func:`relative_paths`): a clone elsewhere, with its data
    beside it, reads them as its own (:func:`kept_study`); the manifest records when, and in which ``RESULTS_FORMAT``.
    """
    root = check_archive_dir(profile)
    kept = [name for name in names if (paths.results_dir(profile) / name).is_file()]
    if not kept:
        return []
    with _writing(root):
        (root / STUDIES).mkdir(parents=True, exist_ok=True)
        for name in kept:
            text = paths.json_text(portable(read_json(paths.results_dir(profile) / name)))
            paths.atomic_write_text(relative_paths(text), root / STUDIES / name)
        data = manifest(profile)
        data["studies"] = {"written": runs.now(), "results_format": paths.RESULTS_FORMAT,
                           "files": sorted({*data.get("studies", {}).get("files", []), *kept})}
        write_json(data, root / MANIFEST)
    return kept


def write_entry(target: Path, source: Source, adapter: bool) -> dict[str, Any]:
    """One entry of ``source`` in ``target``: the run's files, its adapter where kept, and entry.json; its manifest
    summary. ``target`` may be any directory: a worker writes one in its own temporary tree, and the driver adds it
    with :func:`add_entry`."""
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


def directory_size(root: Path) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


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
