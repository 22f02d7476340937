"""The package's imports run one way, by layer and then by module, and no module outgrows :data:`MAX_LINES`.

Layers, lowest first: ``core`` (one training run) -> ``studies`` (built from many runs) -> ``reporting``
(results into prose, tables, figures) -> the top level (``pipeline``, ``cli``). A module imports only
modules before it in ORDER, which lists the layers in that order, so core never imports studies or
reporting, and nothing but the top level imports pipeline or cli.

Parsed with ``ast`` (imports inside functions included, since a lazy import is still a
dependency), so a cycle such as model <-> data, or a library module importing the command
line, fails here rather than as an ImportError in one code path months later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lora_agnews"

LAYERS = ("core", "studies", "reporting", "")  # "" is the top level: lora_agnews/*.py

# Lowest first, by layer. The core is one training run's path, each module importing only those before it:
# paths -> families -> methods -> tasks -> config -> dataset -> tokens -> the model (encoders ... budget) -> evaluate ->
# runs -> ... -> train; the archive and the launch helpers sit low (torch-free or nearly), the export beside train,
# off that path.
TASKS = ["tasks.__init__", "tasks.registry", "tasks.label_sets", "tasks.multilabel_scores", "tasks.rows", "tasks.wheel",
         "tasks.wheel_corpora", "tasks.hub", "tasks.agnews", "tasks.directory"]
ORDER = {
    "core": ["__init__", "hardware", "paths", "families", "methods", *TASKS, "config", "checkpoints", "dataset", "tokens",
             "encoders", "precision", "heads", "quantize", "build", "budget", "evaluate", "runs", "archive", "launch",
             "adapter", "restore", "card", "distill", "score", "trainer", "train", "export"],
    "studies": ["__init__", "agreement", "comparison", "coverage", "yardsticks", "experiments", "archived_seeds", "merging", "multitask", "merging_study", "quantize_study",
                "multilabel_study", "baselines", "audit", "verify", "reproduction", "explore"],
    "reporting": ["__init__", "audit_text", "text", "ablation_reporting", "merge_reporting", "plots", "multilabel_plots",
                  "reproduction_reporting", "book_pages", "site", "findings"],
    # the top level: the pipeline, the plan of its runs, the engines that compute them (lora_agnews/engines/), the CLI
    "": ["__init__", "pipeline", "plan", "engines.work", "engines.install", "engines.driver", "engines.inline",
         "engines.ray_engine", "engines.__init__", "cli", "__main__"],
}
FLAT = [f"{layer}.{m}".lstrip(".") for layer in LAYERS for m in ORDER[layer]]


def qualified(path: Path) -> str:
    """``lora_agnews/core/train.py`` -> ``core.train``; ``lora_agnews/cli.py`` -> ``cli``."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def package_modules() -> list[str]:
    return sorted(qualified(p) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def layer_of(module: str) -> str:
    layer = module.split(".")[0] if "." in module else ""
    return "" if layer == "engines" else layer  # the engines run the pipeline's runs: part of the top level


def imported_modules(name: str) -> dict[str, int]:
    """Package modules ``name`` (qualified, e.g. ``core.train``) imports, anywhere in the file -> first line."""
    path = PACKAGE.joinpath(*name.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = set(package_modules())
    here = name.split(".")[:-1]  # the package the module is in, relative to lora_agnews
    found: dict[str, int] = {}

    def add(module: str, line: int) -> None:
        if module != name:
            if module in known:
                found.setdefault(module, line)
            elif f"{module}.__init__".lstrip(".") in known:
                found.setdefault(f"{module}.__init__".lstrip("."), line)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "lora_agnews":
                    continue
                base = parts[1:]
            else:
                base = (here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)) + \
                    [p for p in (node.module or "").split(".") if p]
            for alias in node.names:  # from X import name: name may be a module of X
                candidate = ".".join(base + [alias.name])
                if candidate in known:
                    add(candidate, node.lineno)
                else:
                    add(".".join(base), node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lora_agnews" and len(parts) > 1:
                    add(".".join(parts[1:]), node.lineno)
    found.pop("__init__", None)  # the package itself (__version__) is below everything
    return found


def dynamic_imports(name: str) -> list[int]:
    """Lines calling importlib.import_module / __import__ (they would hide an import from this test)."""
    tree = ast.parse(PACKAGE.joinpath(*name.split(".")).with_suffix(".py").read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                lines.append(node.lineno)
    return lines


def test_every_module_has_a_place_in_the_order() -> None:
    missing = [m for m in package_modules() if m not in FLAT]
    assert not missing, f"add {missing} to ORDER in tests/test_imports.py, in its layer after everything they import"
    gone = [m for m in FLAT if m not in package_modules()]
    assert not gone, f"ORDER names modules that do not exist: {gone}"
    assert len(FLAT) == len(set(FLAT))


@pytest.mark.parametrize("name", package_modules())
def test_layers_import_only_layers_below(name: str) -> None:
    """core never imports studies/reporting/top level; studies never reporting/top level; and so on."""
    rank = LAYERS.index(layer_of(name))
    upward = {m: line for m, line in imported_modules(name).items() if LAYERS.index(layer_of(m)) > rank}
    assert not upward, (f"lora_agnews/{name.replace('.', '/')}.py (layer {layer_of(name) or 'top'}) imports from a "
                        "higher layer: " + ", ".join(f"{m} (line {line})" for m, line in sorted(upward.items()))
                        + ". Move what they share down a layer.")


@pytest.mark.parametrize("name", package_modules())
def test_imports_run_one_way(name: str) -> None:
    rank = FLAT.index(name)
    upward = {m: line for m, line in imported_modules(name).items() if FLAT.index(m) > rank}
    assert not upward, (f"lora_agnews/{name.replace('.', '/')}.py imports module(s) later in the order: "
                        + ", ".join(f"{m} (line {line})" for m, line in sorted(upward.items()))
                        + ". Move what they share down, or the command-line glue into cli.py.")


@pytest.mark.parametrize("name", package_modules())
def test_no_dynamic_imports(name: str) -> None:
    assert not dynamic_imports(name), f"lora_agnews/{name}.py imports dynamically at lines {dynamic_imports(name)}"


def test_every_package_is_in_pyprojects_package_list() -> None:
    """pyproject lists the packages a wheel installs; a subpackage left out imports from a checkout only."""
    import tomllib

    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert found == set(listed["packages"]), f"pyproject's [tool.setuptools] packages should be {sorted(found)}"


def test_the_checker_sees_lazy_relative_and_absolute_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser itself: function-level relative imports (one and two dots) and absolute ones are all found."""
    fake = tmp_path / "lora_agnews"
    for layer in ("core", "studies"):
        (fake / layer).mkdir(parents=True)
        (fake / layer / "__init__.py").write_text("", encoding="utf-8")
    for module in ("core/config", "core/model", "core/budget", "core/data", "studies/audit", "cli", "__init__"):
        (fake / f"{module}.py").write_text("", encoding="utf-8")
    (fake / "core" / "model.py").write_text(
        "import os\n\ndef f():\n    from .budget import x\n    import lora_agnews.cli\n"
        "    from . import config\n    from lora_agnews.core import data\n    from ..studies.audit import y\n"
        "    from lora_agnews import __version__\n", encoding="utf-8")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert imported_modules("core.model") == {"core.budget": 4, "cli": 5, "core.config": 6, "core.data": 7,
                                              "studies.audit": 8}


MAX_LINES = 500  # a module a reader can hold in mind; split along its concerns before it grows past this
# Modules still over MAX_LINES until their split (issue #40). This list must only shrink: a module split below the
# limit leaves it (the test below fails until it does), and no module joins it.
OVERSIZED = {"core.config", "core.runs", "core.paths", "studies.merging", "studies.audit",
             "pipeline", "cli"}


def line_count(name: str) -> int:
    return len(PACKAGE.joinpath(*name.split(".")).with_suffix(".py").read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("name", package_modules())
def test_no_module_is_over_the_line_limit(name: str) -> None:
    lines = line_count(name)
    if name in OVERSIZED:
        assert lines > MAX_LINES, f"{name} has {lines} lines now: remove it from OVERSIZED in tests/test_imports.py"
    else:
        assert lines <= MAX_LINES, (f"lora_agnews/{name.replace('.', '/')}.py has {lines} lines (limit {MAX_LINES}): "
                                    "split it along its concerns")


def test_the_oversized_list_names_modules_that_exist() -> None:
    assert OVERSIZED <= set(package_modules()), f"OVERSIZED names no module: {OVERSIZED - set(package_modules())}"


def test_the_configuration_and_its_tables_load_without_torch() -> None:
    """A configuration, the method, family and task tables and a checkpoint's identity load neither torch nor
    peft nor transformers (the method builders import them when called), so reading records stays quick."""
    import subprocess
    import sys

    script = ("import sys\nfrom lora_agnews.core import checkpoints, config, families, methods, runs\n"
              "from lora_agnews.core.tasks import registry\n"
              "config.load('smoke').replace(method='adalora')\ncheckpoints.model_identity('tiny-roberta')\n"
              "print(sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
