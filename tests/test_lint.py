"""Lint: ``ruff check lora_agnews tests benchmarks data`` with the rules in pyproject's [tool.ruff].

The rules are a small set that finds real mistakes (unused imports and variables, undefined
names, redefinitions, syntax errors), not style; a failure shows ruff's own report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["lora_agnews", "tests", "benchmarks", "data"]


def _ruff() -> str:
    """ruff next to this interpreter (the .venv), else on PATH; it is pinned in pyproject's test extra."""
    exe = Path(sys.executable).with_name("ruff")
    found = str(exe) if exe.is_file() else shutil.which("ruff")
    assert found, "ruff is not installed: run `make setup` (it is in pyproject's test extra)"
    return found


def test_ruff_check_passes() -> None:
    proc = subprocess.run([_ruff(), "check", "--no-cache", *PATHS], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, f"ruff check {' '.join(PATHS)} found problems:\n{proc.stdout}{proc.stderr}"


def test_ruff_is_the_pinned_version() -> None:
    """The version pinned in pyproject (rules can change between releases)."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    out = subprocess.run([_ruff(), "--version"], capture_output=True, text=True, timeout=60).stdout.split()
    assert f'"ruff=={out[-1]}"' in pyproject, f"installed {' '.join(out)}; pyproject pins another (run `make setup`)"
