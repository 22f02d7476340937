"""Where files live, how results are written and read, and how progress is told.

Paths are anchored on the installed package (the repository checkout), never on the current working
directory. Results are written atomically (JSON records, figures, LaTeX macros), numbers and tables are
formatted once for the notebooks, the book and the report, and progress stays quiet where nobody watches.
The bottom of the core: imports nothing from the package (torch and pandas only inside the functions
that need them, so importing it stays cheap).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

if TYPE_CHECKING:
    import pandas as pd

class ProjectError(RuntimeError):
    """A failure the project reports on purpose, in one line that names the problem and the fix (a run, a model,
    the archive, the audit); the command line prints it without a traceback, as it does every ``ValueError``."""


# --------------------------------------------------------------------------- where things live
# The one place that knows where things live.
#
# Every path is anchored on the installed package (the repository checkout), never on
# the current working directory, so notebooks executed by papermill from a build folder,
# the CLI run from anywhere and the tests all agree on where results go.

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lora_agnews/ (this file is lora_agnews/core/paths.py)
ROOT = PACKAGE_DIR.parent
PYPROJECT = ROOT / "pyproject.toml"
CONFIGS = ROOT / "configs"
DATA = ROOT / "data"
SAMPLE_DATA = DATA / "sample"
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
REPORT = ROOT / "report"
# What the notebooks write and the book and report read (result files, macros, tables, figures). Bump it
# whenever a change makes results written before it unreadable by this version's book or report: such
# results are then refused with the one command that regenerates them, not a failure inside Sphinx or LaTeX.
RESULTS_FORMAT = 7
# What a run directory holds (run.json, metrics.json, history.json, test_predictions.npz, the adapter): an archived
# run is keyed by it (:mod:`lora_agnews.core.archive`). Apart from RESULTS_FORMAT, so that a change to what the
# book and report read does not turn every archived run stale; bump it when a run written before cannot be read.
RUN_FORMAT = 5


def results_root() -> Path:
    """Root of generated results; ``LORA_AGNEWS_RESULTS`` moves it (tests use a tmp dir)."""
    return Path(os.environ.get("LORA_AGNEWS_RESULTS", ROOT / "results")).resolve()


def build_root() -> Path:
    """Root of build outputs (executed notebooks, book HTML, report PDF)."""
    return Path(os.environ.get("LORA_AGNEWS_BUILD", ROOT / "build")).resolve()


def results_dir(profile: str) -> Path:
    """Where the artifacts of one profile are written: ``results/<profile>/``."""
    return results_root() / profile


def archive_dir(profile: str) -> Path:
    """A profile's archive of complete runs, ``archive/<profile>/`` (committed; ``LORA_AGNEWS_ARCHIVE`` moves
    its root: tests point it at a temporary directory so they never read or write the committed one)."""
    return Path(os.environ.get("LORA_AGNEWS_ARCHIVE", ROOT / "archive")).resolve() / profile


# `reproduce` retrains a profile into a tree of its own, so that neither the profile's results (restored from the
# archive, what the book shows) nor its executed notebooks are touched: results/reproduced/<profile>/ and
# build/reproduced/<profile>/ (under LORA_AGNEWS_RESULTS and LORA_AGNEWS_BUILD where those move the roots).
REPRODUCED = "reproduced"
REPRODUCTION_FILE = "reproduction.json"  # the comparison, in the profile's own results: the book and report read it


def reproduced_dir(profile: str) -> Path:
    """The tree ``reproduce`` retrains a profile into: ``results/reproduced/<profile>/``."""
    return results_root() / REPRODUCED / profile


def reproduction_path(profile: str) -> Path:
    """``results/<profile>/reproduction.json``: the retrained runs and studies compared with the archive."""
    return results_dir(profile) / REPRODUCTION_FILE


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """While open, the environment variables ``values`` are set (None: unset), then put back as they were. The
    process's environment, not an argument: the notebooks' kernels and the studies' subprocesses inherit it."""
    before = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def reproduced_tree() -> contextlib.AbstractContextManager[None]:
    """While open, results and build outputs go to (and are read from) the reproduced tree: every path function
    above, the notebooks' kernels and the studies' subprocesses (they inherit the environment) agree on it."""
    return environment(LORA_AGNEWS_RESULTS=str(results_root() / REPRODUCED),
                       LORA_AGNEWS_BUILD=str(build_root() / REPRODUCED))


def superseded_dir(run_dir: Path, tag: str) -> Path:
    """Where a pipeline-owned run of a configuration that changed is kept (``tag`` names that configuration).

    ``results/superseded/<the run's path under results>-<tag>``: outside every profile's runs/, so
    aggregation and reuse, which scan that tree, never count it. A run directory outside results/
    keeps it beside itself, in a hidden ``.superseded`` folder that scans skip as well.
    """
    run_dir = Path(run_dir).resolve()
    root = results_root()
    try:
        relative = run_dir.relative_to(root)
    except ValueError:
        return run_dir.parent / ".superseded" / f"{run_dir.name}-{tag}"
    return root / "superseded" / relative.parent / f"{relative.name}-{tag}"


STAMP = "COMPLETE"  # written by the pipeline after every notebook and the audit succeeded


def stamp_path(profile: str) -> Path:
    """The stamp the book and the report require: its absence means the results are partial or stale."""
    return results_dir(profile) / STAMP


def figures_dir(profile: str) -> Path:
    return results_dir(profile) / "figures"


def runs_dir(profile: str) -> Path:
    """Training runs (checkpoints, adapter, metrics) of a profile."""
    return results_dir(profile) / "runs"


def executed_notebooks_dir(profile: str) -> Path:
    return build_root() / profile / "notebooks"


def book_build_dir(profile: str) -> Path:
    return build_root() / profile / "book"


def book_source_dir(profile: str) -> Path:
    """The book's sources as the pipeline assembles them (book/ + the profile's notebooks and pages)."""
    return build_root() / profile / "book_src"


def book_html_dir(profile: str) -> Path:
    """Where jupyter-book puts the profile's HTML (``--path-output`` + ``_build/html``)."""
    return book_build_dir(profile) / "_build" / "html"


def report_build_dir(profile: str) -> Path:
    return build_root() / profile / "report"


def site_dir() -> Path:
    """The published site (``python -m lora_agnews site``): a landing page and one folder per profile's book."""
    return build_root() / "site"


def cache_dir() -> Path:
    """Tokenisation cache (safe to delete)."""
    return Path(os.environ.get("LORA_AGNEWS_CACHE", ROOT / "results" / ".cache")).resolve()


def profile_path(name: str) -> Path:
    return CONFIGS / f"{name}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


# --------------------------------------------------------------------------- progress
# Progress reporting that stays quiet where nobody is watching (pipes, CI, log files).
#
# Bars (training through the Trainer's tqdm, test-set scoring, long predictions) appear only
# on an interactive terminal outside CI; elsewhere a few ``[lora_agnews]`` lines on stderr say
# what is happening, so logs stay readable and free of carriage-return noise.

T = TypeVar("T")

_CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD")


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def in_ci() -> bool:
    return any(_truthy(os.environ.get(name, "")) for name in _CI_VARIABLES)


def interactive() -> bool:
    """True on a terminal outside CI; ``LORA_AGNEWS_PROGRESS=1/0`` forces it on or off."""
    forced = os.environ.get("LORA_AGNEWS_PROGRESS")
    if forced is not None:
        return _truthy(forced)
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr (notebook kernels, capture)
        tty = False
    return tty and not in_ci()


def bar(items: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None) -> Iterable[T]:
    """A tqdm bar on a terminal, the plain iterable elsewhere."""
    if not interactive():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, file=sys.stderr, disable=False)


def quiet_libraries() -> None:
    """Turn off the download/map bars of datasets and huggingface_hub when not interactive.

    Where bars are wanted, the project's own switch wins over tqdm's ``TQDM_DISABLE`` (set in many
    shells and CI images), which would otherwise hide the Trainer's bars that
    ``LORA_AGNEWS_PROGRESS=1`` asked for.
    """
    if interactive():
        if _truthy(os.environ.get("LORA_AGNEWS_PROGRESS", "")):
            os.environ.pop("TQDM_DISABLE", None)
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:  # optional: an older hub client without the switch
        pass
    if "datasets" in sys.modules:
        try:
            sys.modules["datasets"].disable_progress_bars()
        except Exception:
            pass
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def say(message: str) -> None:
    """One progress line on stderr (always shown: the pipeline's step-by-step log)."""
    print(f"[lora_agnews] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- writing results
# Writing results: atomic files, figures (PNG + PDF), LaTeX macros, JSON records.
#
# Everything in ``results/`` is written here, through a temporary file and a rename, so an
# interrupted run never leaves a half-written JSON that a later step would read as real.

def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic_write_bytes(data: bytes, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(text: str, path: Path) -> Path:
    return _atomic_write_bytes(text.encode("utf-8"), path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_text(data: Any) -> str:
    """``data`` as the project writes JSON files: indented, keys sorted, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n"


def write_json(data: Any, path: Path) -> Path:
    return atomic_write_text(json_text(data), path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------------- figures
def save_figure(fig: Any, directory: Path, name: str) -> dict[str, Path]:
    """Save ``fig`` once as ``name.png`` (book) and ``name.pdf`` (report); returns both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for ext, kwargs in (("png", {"dpi": 150}), ("pdf", {})):
        target = directory / f"{name}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata=_figure_metadata(ext), **kwargs)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        out[ext] = target
    return out


def _figure_metadata(ext: str) -> dict[str, Any]:
    # Fixed metadata keeps PDFs byte-stable between identical runs.
    return {"CreationDate": None} if ext == "pdf" else {"Software": None}


# --------------------------------------------------------------------------- LaTeX
_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def macro_name(name: str) -> str:
    """LaTeX macro names are letters only: ``test_accuracy_2`` -> ``TestAccuracyTwo``."""
    digits = {"0": "Zero", "1": "One", "2": "Two", "3": "Three", "4": "Four", "5": "Five",
              "6": "Six", "7": "Seven", "8": "Eight", "9": "Nine"}
    parts = []
    for token in name.replace("-", "_").replace("/", "_").split("_"):
        token = "".join(digits.get(c, c) for c in token)
        token = "".join(c for c in token if c.isalpha())
        if token:
            parts.append(token[0].upper() + token[1:])
    if not parts:
        raise ValueError(f"cannot make a LaTeX macro name from {name!r}")
    return "".join(parts)


def write_macros(values: Mapping[str, Any], path: Path, header: str = "") -> Path:
    """``\\newcommand{\\Name}{value}`` per entry; values are escaped text."""
    lines = ["% Generated by lora_agnews; do not edit. " + header]
    for key, value in values.items():
        lines.append(f"\\newcommand{{\\{macro_name(key)}}}{{{latex_escape(value)}}}")
    return atomic_write_text("\n".join(lines) + "\n", path)


# --------------------------------------------------------------------------- numbers and tables
# The reporting layer: how a number is written, and tables declared once for the notebook, the book and the report.
#
# A :class:`Table` holds its values and its :class:`Column` declarations (key, headers, alignment, format).
# The notebooks display :attr:`Table.frame`, the book's pages include :meth:`Table.markdown` and the report
# inputs :meth:`Table.latex`, so a table's columns and numbers cannot drift apart between the three. The
# number formats live here once too: the macros, the sentences and the tables write a value the same way,
# and the tests find the same string in the PDF that the JSON holds.

DASH = "--"


# --------------------------------------------------------------------------- formats
def missing(x: Any) -> bool:
    """None or NaN: a value a run did not produce (written ``n/a`` or ``--``, never ``nan``)."""
    import pandas as pd

    return x is None or (not isinstance(x, str) and bool(pd.isna(x)))


def pct(x: float | None, digits: int = 2) -> str:
    """A share as a percentage without the sign: 0.94372 -> ``94.37``."""
    return "n/a" if missing(x) else f"{100.0 * float(x):.{digits}f}"


def num(n: int | float | None) -> str:
    """Thousands separators: 980740 -> ``980,740``."""
    return "n/a" if missing(n) else f"{int(n):,}"


def dec(x: float | None, digits: int = 3) -> str:
    """A plain decimal (ECE, NLL, a test statistic): 0.04213 -> ``0.042``."""
    return "n/a" if missing(x) else f"{float(x):.{digits}f}"


def pvalue(p: float) -> str:
    """A p-value in a table cell: ``0.123`` or ``< 0.001``."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``= 0.123`` or ``< 0.001``: what follows "p" in a sentence."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def points(x: float | None, digits: int = 2) -> str:
    """A difference of shares in signed percentage points: -0.0075 -> ``-0.75``; ``--`` when missing."""
    return DASH if missing(x) else f"{100 * float(x):+.{digits}f}"


def interval(low: float | None, high: float | None, digits: int = 2, signed: bool = False) -> str:
    """``[88.90, 92.90]`` (percentages) or, ``signed``, ``[-2.10, +0.60]`` (points); ``--`` when missing."""
    if missing(low) or missing(high):
        return DASH
    write = points if signed else pct
    return f"[{write(low, digits)}, {write(high, digits)}]"


def or_dash(write: Callable[[Any], str]) -> Callable[[Any], str]:
    """``write`` for a cell that may be empty: a missing value reads ``--``."""
    return lambda x: DASH if missing(x) else write(x)


def two_decimals(x: float) -> str:
    """A value already in percent, as the tables write it: 94.3712 -> ``94.37``."""
    return f"{x:.2f}"


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    """One column: the key of its values, its headers (book, report), its alignment in the report, its format."""

    key: str
    title: str | None = None  # the book's header; the key when None
    tex: str | None = None  # the report's header; the title when None
    align: str = "r"
    fmt: Callable[[Any], str] = str

    @property
    def book_header(self) -> str:
        return self.key if self.title is None else self.title

    @property
    def report_header(self) -> str:
        return self.book_header if self.tex is None else self.tex


@dataclass(frozen=True)
class Table:
    """A table's values (one record per row, by column key) and its columns, rendered three ways."""

    columns: tuple[Column, ...]
    rows: tuple[dict[str, Any], ...]
    index: str | None = None  # the key the notebook shows as the frame's index
    empty: str = ""  # what the report says instead of a table without rows ("" keeps the bare header)

    @property
    def frame(self) -> pd.DataFrame:
        """The values as the notebook displays them (typed, under the column keys)."""
        import pandas as pd

        frame = pd.DataFrame({c.key: [row.get(c.key) for row in self.rows] for c in self.columns})
        return frame.set_index(self.index) if self.index is not None else frame

    def cells(self) -> list[list[str]]:
        """Every value written by its column's format (what the book and the report show)."""
        return [[c.fmt(row.get(c.key)) for c in self.columns] for row in self.rows]

    def markdown(self) -> str:
        """A GitHub/MyST pipe table for the book: the first column left-aligned, the others right."""
        def line(values: Iterable[str]) -> str:
            return "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |"

        rule = "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(self.columns))) + "|"
        lines = [line(c.book_header for c in self.columns), rule, *(line(r) for r in self.cells())]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        """A booktabs ``tabular`` for the report (captions live in main.tex)."""
        if self.empty and not self.rows:
            return f"\\emph{{{latex_escape(self.empty)}}}"
        body = [r"\begin{tabular}{" + "".join(c.align for c in self.columns) + "}", r"\toprule",
                " & ".join(latex_escape(c.report_header) for c in self.columns) + r" \\", r"\midrule"]
        body += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in self.cells()]
        return "\n".join([*body, r"\bottomrule", r"\end{tabular}"]) + "\n"

    @classmethod
    def of(cls, columns: Sequence[Column], rows: Iterable[Sequence[Any] | dict[str, Any]],
           index: str | None = None, empty: str = "") -> "Table":
        """A table from its columns and rows (records by key, or sequences in column order)."""
        keys = [c.key for c in columns]
        records = tuple(dict(r) if isinstance(r, dict) else dict(zip(keys, r)) for r in rows)
        return cls(tuple(columns), records, index, empty)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, tex: Sequence[str] | None = None, align: str | None = None) -> "Table":
        """A table of a frame's columns, written as they are: the first left-aligned in the report, the rest right."""
        names = [str(n) for n in frame.columns]
        columns = [Column(n, tex=t, align=a) for n, t, a in
                   zip(names, tex or names, align or "l" + "r" * (len(names) - 1))]
        return cls.of(columns, frame.to_dict(orient="records"))


@functools.lru_cache(maxsize=64)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's bytes, computed once per process while its size and modification time stay the same
    (the arguments are the cache's key: pass ``stat().st_size`` and ``st_mtime_ns``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
