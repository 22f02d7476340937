"""The package's imports run one way: a module imports only modules before it in ORDER.

Parsed with ``ast`` (imports inside functions included, since a lazy import is still a
dependency), so a cycle such as model <-> budget, or a library module importing the command
line, fails here rather than as an ImportError in one code path months later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lora_agnews"

# Lowest first. The spine is registry -> config -> data -> model -> heads -> methods -> counting -> budget ->
# train -> experiments -> pipeline / cli; the others sit where what they import and what imports them allow.
ORDER = [
    "__init__", "paths", "progress", "artifacts", "tables", "tasks", "placements", "registry", "multilabel",
    "config", "sources", "data", "model", "quantize", "heads", "methods", "counting",
    "budget",
    "evaluate", "comparison", "runs", "adapter", "multilabel_eval", "export", "distill", "train",
    "experiments", "merging", "multitask", "study", "merge_reporting", "quantize_study", "baselines", "audit", "explore", "reporting", "ablation_reporting", "plots", "multilabel_plots",
    "book_pages", "pipeline", "cli", "__main__",
]


def package_modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py"))


def imported_modules(name: str) -> dict[str, int]:
    """Package modules ``name`` imports (anywhere in the file) -> first line that does."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    known = set(package_modules())
    found: dict[str, int] = {}

    def add(module: str, line: int) -> None:
        if module in known and module != name:
            found.setdefault(module, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("lora_agnews"):
                continue
            parts = (node.module or "").split(".")
            module = parts[1] if node.level == 0 and len(parts) > 1 else (parts[0] if node.level else "")
            if module:
                add(module, node.lineno)
            else:  # from . import a, b  /  from lora_agnews import a, b
                for alias in node.names:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lora_agnews" and len(parts) > 1:
                    add(parts[1], node.lineno)
    return found


def dynamic_imports(name: str) -> list[int]:
    """Lines calling importlib.import_module / __import__ (they would hide an import from this test)."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                lines.append(node.lineno)
    return lines


def test_every_module_has_a_place_in_the_order() -> None:
    missing = [m for m in package_modules() if m not in ORDER]
    assert not missing, f"add {missing} to ORDER in tests/test_imports.py, after everything they import"
    assert len(ORDER) == len(set(ORDER))


@pytest.mark.parametrize("name", package_modules())
def test_imports_run_one_way(name: str) -> None:
    rank = ORDER.index(name)
    upward = {m: line for m, line in imported_modules(name).items() if ORDER.index(m) > rank}
    assert not upward, (f"lora_agnews/{name}.py imports module(s) later in the order: "
                        + ", ".join(f"{m} (line {line})" for m, line in sorted(upward.items()))
                        + ". Move what they share down, or the command-line glue into cli.py.")


@pytest.mark.parametrize("name", package_modules())
def test_no_dynamic_imports(name: str) -> None:
    assert not dynamic_imports(name), f"lora_agnews/{name}.py imports dynamically at lines {dynamic_imports(name)}"


def test_the_checker_sees_lazy_and_absolute_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser itself: a function-level relative import and an absolute one are both found."""
    fake = tmp_path / "lora_agnews"
    fake.mkdir()
    for module in ("config", "model", "budget", "cli"):
        (fake / f"{module}.py").write_text("", encoding="utf-8")
    (fake / "model.py").write_text("import os\n\ndef f():\n    from .budget import x\n    import lora_agnews.cli\n"
                                   "    from . import config\n    from lora_agnews import data\n", encoding="utf-8")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert imported_modules("model") == {"budget": 4, "cli": 5, "config": 6}
