"""The one place that knows where things live.

Every path is anchored on the installed package (the repository checkout), never on
the current working directory, so notebooks executed by papermill from a build folder,
the CLI run from anywhere and the tests all agree on where results go.
"""

from __future__ import annotations

import os
from pathlib import Path

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
RESULTS_FORMAT = 6
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
