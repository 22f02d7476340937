"""The research pipeline: six notebooks (papermill) -> HTML book (jupyter-book) -> PDF report (latexmk).

``python -m lora_agnews run --profile NAME`` runs it; ``make all|notebooks|book|report`` call that.
The notebooks are the only producers of results: each reads its parameters (the profile's
values, then ``-p`` overrides), calls the package and writes JSON, figures and LaTeX under
``results/<profile>/``. A ``COMPLETE`` stamp is written only after all six succeeded and is
removed before they start, so the book and the report can never show stale or partial results.

The first half of this module holds the small helpers the notebooks call (their config,
the main run, re-scoring the saved adapter); the second half drives the steps.
"""

from __future__ import annotations

import contextlib
import io
from html import escape as html_escape
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from .core import config as config_mod, paths, runs
from .core.paths import RESULTS_FORMAT, STAMP, interactive, read_json, save_figure, say, stamp_path, write_json
from .core.config import Config, ConfigError

NOTEBOOKS = ("01_exploration", "02_training", "03_evaluation", "04_ablations", "05_merging", "06_quantization")
STEPS = ("notebooks", "book", "report")
KERNEL = "python3"
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


class PipelineError(RuntimeError):
    """A step failed; the message says which, why, and where to look."""


# =========================================================================== notebook side
def notebook_config(namespace: Mapping[str, Any]) -> Config:
    """The notebook's config: ``profile``'s values, then its parameters (a notebook's globals) as overrides.

    Any plain value (str/int/float/bool) in the namespace whose name is not a config key is
    taken for a mistyped parameter and refused by name: papermill injects whatever it is
    given, so a typo would otherwise run the notebook with the profile's value in silence.
    """
    if "profile" not in namespace:
        raise ConfigError("the notebook's parameters cell must define profile = \"<name>\" (e.g. \"demo\").")
    known = set(config_mod.keys())
    unknown = sorted(k for k, v in namespace.items()
                     if isinstance(v, (str, int, float, bool)) and not k.startswith("_")
                     and k not in known and k not in _IPYTHON_NAMES)
    if unknown:
        config_mod.coerce(unknown[0], namespace[unknown[0]])  # raises ConfigError naming it (with a hint)
    values = {k: namespace[k] for k in known if k in namespace and k != "profile"}
    return config_mod.load(str(namespace["profile"]), values)


def main_run_dir(cfg: Config) -> Path:
    """The run directory of the profile's main training run (notebooks 02 and 03)."""
    return paths.runs_dir(cfg.profile) / "main"


def main_adapter_dir(cfg: Config) -> Path:
    """The saved adapter (LoRA weights + trained head) of the main run."""
    return main_run_dir(cfg) / "adapter"


def load_history(cfg: Config) -> list[dict[str, Any]]:
    """The main run's Trainer log history (training loss and validation metrics per logged step)."""
    return read_json(main_run_dir(cfg) / "history.json")


def train_main(cfg: Config) -> dict[str, Any]:
    """Train the main run; a complete run of the same config is reused, one of another config replaced.

    Reuse keeps re-executing the notebooks cheap (the paper profile trains for an hour); the
    run record's config key decides, so a changed parameter always retrains.
    """
    from .core.train import train_owned

    with quiet_training():
        return train_owned(cfg, main_run_dir(cfg))


@contextlib.contextmanager
def quiet_training() -> Iterator[None]:
    """Keep the Trainer's printed per-step log dicts out of the notebook (history.json holds them all)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@dataclass
class Rescored:
    """Test-split predictions of the saved adapter, re-scored in a fresh model."""

    metrics: dict[str, Any]
    logits: np.ndarray
    probs: np.ndarray
    texts: list[str]
    labels: np.ndarray
    adapter_dir: Path
    agreement: float | None  # share of test predictions equal to those made right after training

    @property
    def names(self) -> tuple[str, ...]:
        """The task's class names, in label-id order (from the metrics the scoring produced)."""
        return tuple(self.metrics["labels"])

    def summary(self, threshold: float = 0.99) -> str:
        """Where the adapter came from and whether it reproduces the run's own predictions.

        Below ``threshold`` the saved artifact is not the model that was evaluated after training
        (changed data or code): the reader is told so and how to fix it, not left to guess.
        """
        lines = [f"adapter: {self.adapter_dir}", f"test examples: {int(self.metrics['n_eval']):,}"]
        if self.agreement is None:
            lines.append("agreement: not checked (the run saved no test predictions of the same length)")
        else:
            lines.append(f"agreement with the predictions saved after training: {self.agreement:.2%}")
            if self.agreement < threshold:
                lines.append("WARNING: the reloaded adapter disagrees with the predictions made after training; the "
                             "data or the code changed since the run was trained: delete the run directory to "
                             "retrain it.")
        return "\n".join(lines)


def rescore_test(cfg: Config) -> Rescored:
    """Load the main run's adapter into a freshly built base model and score the test split as the run did.

    This is the check that the saved artifact (the method's weights + trained head) is the model: the
    predictions are compared with the ones recorded at the end of training (``train.rescore``, the audit's path).
    """
    from .core.evaluate import compute_metrics, softmax
    from .core.precision import device_for
    from .core.score import rescore
    from .studies.comparison import bootstrap_ci

    run_dir = main_run_dir(cfg)
    runs.load_complete(run_dir)  # a clear error when 02 did not finish
    scored = rescore(run_dir, device_for(cfg))
    if scored.cfg.run_key() != cfg.run_key():
        diff = sorted(k for k, v in cfg.run_key().items() if scored.cfg.run_key().get(k) != v)
        raise runs.RunError(f"the adapter in {run_dir} was trained with other parameters ({', '.join(diff)}); "
                            f"re-execute 02_training with this configuration first.")
    logits, labels, probs = scored.logits, scored.labels, softmax(scored.logits)
    metrics = compute_metrics(labels, logits.argmax(1), probs, names=scored.splits.labels)
    metrics["accuracy_ci"] = bootstrap_ci(logits.argmax(1) == labels, seed=cfg.seed)
    agreement = None
    with np.load(run_dir / "test_predictions.npz") as old:
        if len(old["logits"]) == len(logits):
            agreement = float((old["logits"].argmax(1) == logits.argmax(1)).mean())
    return Rescored(metrics, logits, probs, scored.splits.test["text"].tolist(), labels,
                    main_adapter_dir(cfg), agreement)


def adapter_contents(adapter_dir: Path) -> "Any":
    """Tensors saved in the adapter, grouped (LoRA weights vs trained head), with parameter counts.

    Comparing the saved total with the trainable count shows the artifact holds exactly
    what was trained: nothing missing (the head), nothing extra (frozen weights).
    """
    import pandas as pd
    from safetensors import safe_open

    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights.is_file():
        raise runs.RunError(f"{weights} is missing; re-execute 02_training.")
    groups: dict[str, list[int]] = {}
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            group = "LoRA weights" if "lora_" in key else "classification head" if "classifier" in key else "other"
            n = int(np.prod(handle.get_slice(key).get_shape()))
            groups.setdefault(group, []).append(n)
    frame = pd.DataFrame([(g, len(v), sum(v)) for g, v in groups.items()], columns=["group", "tensors", "parameters"])
    return frame.set_index("group")


def publish_figure(fig: Any, cfg: Config, name: str) -> None:
    """Save ``fig`` as ``results/<profile>/figures/<name>.png`` and ``.pdf``; the notebook still shows it."""
    save_figure(fig, paths.figures_dir(cfg.profile), name)


def write_result(data: Any, cfg: Config, name: str) -> Path:
    """``results/<profile>/<name>.json`` (atomic)."""
    return write_json(data, paths.results_dir(cfg.profile) / f"{name}.json")


# =========================================================================== driver side
def notebook_parameters(profile: str, cfg: Config, notebook: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """What papermill injects: every key of the profile's YAML, every key the notebook declares, overrides.

    Values come from the validated config, so they are typed (``-p lora_r 4`` arrives as 4),
    and a parameter the notebook declares with its demo value is always replaced by this
    profile's value, never silently left at the demo's.
    """
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    keys = set(config_mod.read_profile(profile)) | (declared & set(config_mod.keys())) | set(overrides)
    values = cfg.to_dict()
    ordered = [k for k in config_mod.keys() if k in keys]
    return {k: values[k] for k in ordered}


def run_notebooks(profile: str, cfg: Config, overrides: Mapping[str, Any], audit: bool = True) -> None:
    """Execute the notebooks in order into ``build/<profile>/notebooks``; stop at the first failure.

    ``audit`` False skips the fresh-process audit (``reproduce``'s retraining: its runs are compared with the
    archive instead, and the stamp records no audit)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .core.restore import sitting, sitting_line
    from .reporting import text as reporting

    stamp = stamp_path(profile)
    stamp.unlink(missing_ok=True)  # from here on, the book and report refuse the old results
    out_dir = paths.executed_notebooks_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in NOTEBOOKS:
        (out_dir / f"{name}.ipynb").unlink(missing_ok=True)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # no debugger warning from each kernel
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started, since = time.perf_counter(), time.time()
    for i, name in enumerate(NOTEBOOKS, 1):
        source, target = paths.NOTEBOOKS / f"{name}.ipynb", out_dir / f"{name}.ipynb"
        if not source.is_file():
            raise PipelineError(f"notebook {source} is missing; restore it from the repository (git checkout).")
        say(f"notebook {i}/{len(NOTEBOOKS)}: {name} (profile {profile})")
        t0 = time.perf_counter()
        try:
            with _quiet_papermill():
                papermill.execute_notebook(
                    str(source), str(target), parameters=notebook_parameters(profile, cfg, source, tuple(overrides)),
                    kernel_name=KERNEL, cwd=str(out_dir), progress_bar=interactive(), log_output=False,
                    stderr_file=_ProgressEcho(), extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        except PapermillExecutionError as exc:
            raise PipelineError(_restore_only_refusal(name, exc) or _cell_failure(name, exc, target)) from None
        say(f"notebook {name} done in {time.perf_counter() - t0:.1f} s -> {target}")
    checked = run_audit(profile) if audit else None
    restored = sitting(profile, since)
    for entry in restored["stale"]:
        say(f"archive: stale entry {entry['id']} ({entry['path']}) not used: {entry['changed']}")
    say(sitting_line(profile, restored))
    reporting.write_provenance_macros(profile, restored)
    write_json({"profile": profile, "results_format": RESULTS_FORMAT, "finished": runs.now(), "notebooks": list(NOTEBOOKS),
                "overrides": {k: cfg.to_dict()[k] for k in overrides}, "git_commit": runs.git_commit(),
                "seconds": round(time.perf_counter() - started, 1),
                "audit": ({k: checked[k] for k in ("runs", "reproduced", "largest_abs_logit_diff", "seconds")}
                          | {"verdict": audit_verdict(checked)} if checked else None),
                "archive": restored}, stamp)


def audit_verdict(record: Mapping[str, Any]) -> str:
    """The footer's and the landing page's words for the audit: where it re-scored, in what, and under which rule."""
    from .reporting.audit_text import verdict

    return verdict(record)


def run_audit(profile: str) -> dict[str, Any]:
    """``python -m lora_agnews audit`` in a process of its own; a run that does not reproduce stops the pipeline.

    Its own process, so that nothing the notebooks' kernels built or cached can make a run agree with itself.
    """
    from .reporting import text as reporting
    from .studies.audit import read_audit

    say(f"audit: reloading every saved model of profile {profile} in a fresh process")
    log = paths.executed_notebooks_dir(profile) / "audit.log"
    env = {**os.environ, "LORA_AGNEWS_PROGRESS": "0"}
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "lora_agnews", "audit", "--profile", profile], cwd=paths.ROOT,
                              stdout=out, stderr=subprocess.STDOUT, env=env)
    record = read_audit(profile)
    if done.returncode != 0 or record is None:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-12:]
        raise PipelineError("the audit failed: saved models do not give the numbers recorded for them, so no book or "
                            "report is made from these results:\n" + "\n".join(tail) + f"\n(full log: {log})")
    reporting.write_audit_macros(profile, record)
    say(f"audit: {record['reproduced']} of {record['runs']} saved models reproduced in {record['seconds']:.0f} s")
    return record


class _ProgressEcho:
    """Relays the kernel's progress lines (``[lora_agnews] ...`` on stderr) to the terminal, live.

    A notebook such as 04 trains for minutes; its step-by-step lines show the run is moving.
    Everything else the kernel writes stays in the notebook.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def write(self, text: str) -> None:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.startswith("[lora_agnews]"):
                print("    " + line, file=sys.stderr, flush=True)

    def flush(self) -> None:
        pass


class _DropUndeclared(logging.Filter):
    """Papermill warns for each profile key a notebook does not declare; passing them all is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


@contextlib.contextmanager
def _quiet_papermill() -> Iterator[None]:
    logger = logging.getLogger("papermill")
    drop = _DropUndeclared()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _cell_failure(name: str, exc: Any, target: Path) -> str:
    tail = [_strip_ansi(line) for line in (exc.traceback or [])][-6:]
    trace = "\n".join("    " + line for chunk in tail for line in chunk.splitlines()[-3:])
    return (f"notebook {name} failed in cell [{exc.exec_count}]: {exc.ename}: {_strip_ansi(str(exc.evalue))}\n"
            f"{trace}\n  the partly executed notebook (with the error) is kept at {target}\n"
            f"  later notebooks, the book and the report were not run.")


def _restore_only_refusal(name: str, exc: Any) -> str:
    """The one line of a ``--restore-only`` refusal (:func:`lora_agnews.core.runs.refuse_training`) raised in the
    notebook or in a study's subprocess, or ``""`` for any other failure."""
    for line in _strip_ansi(str(exc.evalue)).splitlines():
        if runs.RESTORE_ONLY in line:
            return f"notebook {name}: " + line[line.index(runs.RESTORE_ONLY):]
    return ""


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def regenerate_hint(profile: str) -> str:
    """The one command that rewrites a profile's results with this version of the package."""
    return f"run `make notebooks PROFILE={profile}` (python -m lora_agnews run --profile {profile} --steps notebooks)"


def require_results(profile: str) -> dict[str, Any]:
    """The stamp of a complete notebook run by this results format, or an error naming the command that makes one."""
    stamp = stamp_path(profile)
    if not stamp.is_file():
        raise PipelineError(
            f"no complete results for profile '{profile}' in {paths.results_dir(profile)} (no {STAMP} stamp: the "
            f"notebooks have not all run successfully since the last change). Run `make notebooks PROFILE={profile}` "
            f"(or python -m lora_agnews run --profile {profile} --steps notebooks) first.")
    try:
        data = read_json(stamp)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PipelineError(f"{stamp} is unreadable (not the JSON the notebooks step writes); "
                            f"{regenerate_hint(profile)}.")
    found = data.get("results_format", 1)
    if found != RESULTS_FORMAT:
        age = "an older" if isinstance(found, int) and found < RESULTS_FORMAT else "another"
        raise PipelineError(f"results/{profile} were written by {age} version of lora_agnews (results format "
                            f"{found}; this version reads {RESULTS_FORMAT}): {regenerate_hint(profile)}.")
    return data


def _run_tool(cmd: Sequence[str], cwd: Path, what: str, log: Path) -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n" + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if ln.strip()]
        shown = [ln for ln in lines if re.search(r"(?i)warning|error|^!|\.tex:\d+:", ln)][-15:] or lines[-15:]
        raise PipelineError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join("    " + ln for ln in shown)
                            + f"\n  full log: {log}")


# --------------------------------------------------------------------------- book
def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.is_file():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        raise PipelineError("jupyter-book is not installed in this environment; run `make setup`.")
    return found


def book_html_dir(profile: str) -> Path:
    """Where jupyter-book puts the HTML (``--path-output`` + ``_build/html``)."""
    return paths.book_html_dir(profile)


def assemble_book(profile: str, stamp: Mapping[str, Any]) -> Path:
    """``build/<profile>/book_src``: book/ sources rendered with this profile's results + executed notebooks."""
    from .reporting import book_pages

    src = paths.book_source_dir(profile)
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(paths.BOOK, src, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints", "__pycache__"))
    (src / "notebooks").mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        executed = paths.executed_notebooks_dir(profile) / f"{name}.ipynb"
        if not executed.is_file():
            raise PipelineError(f"{executed} is missing; run `make notebooks PROFILE={profile}` first.")
        _book_copy(executed, src / "notebooks" / executed.name)
    figures = src / "figures"
    figures.mkdir(exist_ok=True)
    for png in paths.figures_dir(profile).glob("*.png"):
        shutil.copy2(png, figures / png.name)
    try:
        context = book_pages.book_context(profile, stamp)
        book_pages.render_pages(src, context)
        _reproduced_page(src, profile, stamp)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise PipelineError(f"book: cannot render the pages from results/{profile} ({exc}); if they were written by "
                            f"an older version of lora_agnews, {regenerate_hint(profile)}.") from None
    _write_book_config(src, context)
    return src


REPRODUCED_PAGE = "reproduced"  # book/reproduced.md: in the book only where `reproduce` compared this profile


def _reproduced_page(src: Path, profile: str, stamp: Mapping[str, Any]) -> None:
    """Render the page "Reproduced on this machine" after the results page and list it in the table of contents
    where ``results/<profile>/reproduction.json`` describes these results; else leave the template out."""
    import yaml

    from .reporting import book_pages, reproduction_reporting
    from .studies.reproduction import read_reproduction

    page = src / f"{REPRODUCED_PAGE}.md"
    record = read_reproduction(profile)
    if not reproduction_reporting.applies(record, stamp):
        page.unlink(missing_ok=True)
        return
    page.write_text(book_pages.render_template(page.read_text(encoding="utf-8"),
                                               reproduction_reporting.book_context(record), page.name), encoding="utf-8")
    toc_file = src / "_toc.yml"
    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8"))
    chapters = toc["parts"][0]["chapters"]
    chapters.insert(next(i for i, c in enumerate(chapters) if c["file"] == "results") + 1, {"file": REPRODUCED_PAGE})
    toc_file.write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")


def _book_copy(executed: Path, target: Path) -> None:
    """The executed notebook, arranged for reading; outputs untouched, nothing re-executed.

    The title cell moves to the top (a page should open with its title, not with code); the
    original parameters cell (the demo defaults papermill overrode) is dropped from the page;
    the injected parameters, the values that produced the outputs, stay one click away.
    """
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), None)
    if title:
        nb.cells.insert(0, nb.cells.pop(title))
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        elif "injected-parameters" in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    nbformat.write(nb, target)


def _write_book_config(src: Path, context: Mapping[str, Any]) -> None:
    import yaml

    cfg_file = src / "_config.yml"
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
    data["title"] = f"{data.get('title', 'lora-agnews')} ({context['profile']} profile)"
    html = data.setdefault("html", {})
    if context["banner"]:  # every page: what these results are, and every override that changes their meaning
        html["announcement"] = f"<b>{context['profile']} profile:</b> {html_escape(context['banner_note'])}"
    _publication_config(data, context)
    cfg_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


REPOSITORY_URL_ENV = "LORA_AGNEWS_REPOSITORY_URL"
REPOSITORY_BRANCH_ENV = "LORA_AGNEWS_REPOSITORY_BRANCH"  # the branch Colab opens the notebooks from (default main)
COLAB_URL = "https://colab.research.google.com"


def project_repository() -> str:
    """The repository pyproject.toml names (``[project.urls] Repository``), where the notebooks install it from."""
    import tomllib

    return tomllib.loads(paths.PYPROJECT.read_text(encoding="utf-8"))["project"]["urls"]["Repository"].rstrip("/")


def _publication_config(data: dict[str, Any], context: Mapping[str, Any]) -> None:
    """What a published book needs, added to its jupyter-book config ``data`` (in place).

    An HTML meta description (and Open Graph title/description) on every page, a footer with the
    commit and date the results come from and when the book was built, and, when
    ``LORA_AGNEWS_REPOSITORY_URL`` is set (the publishing workflow sets it to the GitHub repository),
    a link back to the repository: ``repository.url`` + ``html.use_repository_button``, and on GitHub an
    "open in Colab" button on each notebook page that opens the repository's ``notebooks/NN_name.ipynb`` on
    ``LORA_AGNEWS_REPOSITORY_BRANCH`` (default main). Unset or empty, the book links nowhere, as a book built
    offline should.
    """
    from html import escape

    profile = context["profile"]
    stamp = context.get("stamp") or {}
    budget = (context.get("cfg") or {}).get("budget", 1_000_000)
    description = (f"LoRA fine-tuning of {context['model_name']} for AG News topic classification with at most "
                   f"{budget:,} trainable parameters, classification head included: results of the {profile} "
                   f"profile, with the executed notebooks.")
    meta = data.setdefault("sphinx", {}).setdefault("config", {}).setdefault("myst_html_meta", {})
    meta.update({"description": description, "property=og:title": str(data.get("title", "lora-agnews")),
                 "property=og:description": description, "property=og:type": "website"})

    html = data.setdefault("html", {})
    url = os.environ.get(REPOSITORY_URL_ENV, "").strip().rstrip("/")
    if url:
        if not re.match(r"https?://[^\s/]+", url):
            raise PipelineError(f"{REPOSITORY_URL_ENV}={url!r} is not an http(s) URL. Set it to the repository's "
                                f"address (for example https://github.com/OWNER/REPO) or unset it.")
        # sphinx-book-theme links a notebook page to <path_to_book>/<page name>.ipynb of the repository, and a
        # notebook page's name, notebooks/NN_name, is where the repository keeps the notebook (unexecuted), so
        # path_to_book is the repository's root. No other link reads it (the edit, source, issues buttons are off).
        branch = os.environ.get(REPOSITORY_BRANCH_ENV, "").strip() or "main"
        data["repository"] = {**(data.get("repository") or {}), "url": url, "path_to_book": "", "branch": branch}
        html["use_repository_button"] = True
        # Colab opens the notebook from this repository, and its first code cell clones and installs the project
        # from pyproject's address: a button only where the two agree (not on a fork that kept the address).
        # The theme builds Colab links for GitHub only (for other hosts it warns, and warnings are errors here).
        if urlsplit(url).netloc == "github.com" and url == project_repository():
            data["launch_buttons"] = {**(data.get("launch_buttons") or {}), "colab_url": COLAB_URL}
        else:
            say(f"book: no Colab button: the notebooks install the project from {project_repository()}, not {url} "
                f"(pyproject.toml [project.urls] Repository and the notebooks' first code cell name it)")

    commit = str(stamp.get("git_commit") or "unknown")
    sha = commit.removesuffix("-dirty")
    shown = f"<code>{escape(sha[:12])}</code>"
    if url and re.fullmatch(r"[0-9a-f]{7,40}", sha):
        shown = f'<a href="{escape(url)}/tree/{escape(sha)}">{shown}</a>'
    if commit.endswith("-dirty"):
        shown += " (with uncommitted changes)"
    html["extra_footer"] = (
        f"Profile <b>{escape(profile)}</b>: results from commit {shown}, notebooks finished "
        f"{escape(str(stamp.get('finished', 'unknown')))} ({escape(_restored_words(stamp))}"
        f"{escape('; ' + stamp['audit']['verdict'] if (stamp.get('audit') or {}).get('verdict') else '')}); book built {runs.now()} by "
        f"<code>python -m lora_agnews run</code>. Code under the MIT licence; AG News and adapters trained "
        f"on it: research and non-commercial use only.")


def _restored_words(stamp: Mapping[str, Any]) -> str:
    """The footer's words for where the runs were computed: restored runs are never shown as computed here."""
    sitting = stamp.get("archive") or {}
    if not sitting.get("restored"):
        return "no run restored from the archive"
    return f"{sitting['restored']} run(s) restored from the archive, computed {'; '.join(sitting['computed'])}"


def build_book(profile: str) -> Path:
    """Render the stored notebook outputs and the results page to HTML; warnings are errors."""
    stamp = require_results(profile)
    t0 = time.perf_counter()
    say(f"book: assembling sources for profile {profile}")
    src = assemble_book(profile, stamp)
    out = paths.book_build_dir(profile)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    say("book: jupyter-book build (offline, warnings are errors)")
    _run_tool([_jupyter_book(), "build", str(src), "--path-output", str(out), "--warningiserror", "--keep-going",
               "--all"], cwd=src, what="jupyter-book build", log=out / "build.log")
    index = book_html_dir(profile) / "index.html"
    if not index.is_file():
        raise PipelineError(f"jupyter-book finished but {index} is missing; see {out / 'build.log'}.")
    say(f"book done in {time.perf_counter() - t0:.1f} s -> {index}")
    return index


# --------------------------------------------------------------------------- report
def build_report(profile: str) -> Path:
    """Copy report/ sources, generated LaTeX and figure PDFs into the build dir; latexmk to main.pdf."""
    from .reporting import text as reporting

    require_results(profile)
    if not shutil.which("latexmk"):
        raise PipelineError("latexmk is not installed: run `make tex` (Debian TeX packages) and retry.")
    t0 = time.perf_counter()
    out = paths.report_build_dir(profile)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for item in paths.REPORT.iterdir():
        if item.is_file() and item.suffix in (".tex", ".bib", ".sty", ".bst", ".cls"):
            shutil.copy2(item, out / item.name)
    tex = reporting.tex_dir(profile)
    missing = [f"macros_{n}.tex" for n in reporting.NOTEBOOK_MACRO_FILES if not (tex / f"macros_{n}.tex").is_file()]
    if missing:
        raise PipelineError(f"{tex} lacks {', '.join(missing)}; run `make notebooks PROFILE={profile}` first.")
    shutil.copytree(tex, out / "generated")
    _reproduced_section(out / "generated", profile)
    (out / "figures").mkdir()
    for pdf in paths.figures_dir(profile).glob("*.pdf"):
        shutil.copy2(pdf, out / "figures" / pdf.name)
    say(f"report: latexmk main.tex (profile {profile})")
    try:
        _run_tool(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "main.tex"],
                  cwd=out, what="latexmk", log=out / "latexmk-output.log")
    except PipelineError as exc:
        missing = _missing_generated(out)
        if missing:
            raise PipelineError(f"report: main.tex needs {missing}, which results/{profile} do not provide (written "
                                f"by an older version of lora_agnews?): {regenerate_hint(profile)}.") from None
        raise exc from None
    pdf = out / "main.pdf"
    if not pdf.is_file():
        raise PipelineError(f"latexmk finished but {pdf} is missing; see {out / 'main.log'}.")
    say(f"report done in {time.perf_counter() - t0:.1f} s -> {pdf}")
    return pdf


def _reproduced_section(generated: Path, profile: str) -> None:
    """``generated/reproduction.tex`` (main.tex inputs it where it exists) where ``reproduction.json`` describes
    these results: the section "Reproduced on this machine"."""
    from .reporting import reproduction_reporting
    from .studies.reproduction import read_reproduction

    record = read_reproduction(profile)
    if reproduction_reporting.applies(record, require_results(profile)):
        paths.atomic_write_text(reproduction_reporting.latex_section(record), generated / "reproduction.tex")


def _missing_generated(out: Path) -> str:
    """What a failed LaTeX run lacked among the generated inputs (a table, a figure, a macro), or ``""``.

    Only what the results provide counts: a typo in main.tex itself stays LaTeX's own error.
    """
    log = out / "main.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    for name in re.findall(r"File `([^']+)' not found", text):
        if name.startswith("generated/") or Path(name).suffix in ("", ".pdf", ".png"):
            return f"`{name}`"
    if "Undefined control sequence" in text:
        after = text.split("Undefined control sequence", 1)[1]
        context = re.search(r"^l\.\d+ (.*)$", after, re.M)
        used = re.findall(r"\\([A-Za-z]+)", context.group(1)) if context else []
        if used:
            generated = "".join(p.read_text(encoding="utf-8") for p in (out / "generated").glob("*.tex"))
            if used[-1][0].isupper() and f"\\newcommand{{\\{used[-1]}}}" not in generated:
                return f"the macro `\\{used[-1]}`"
    return ""


# --------------------------------------------------------------------------- entry points
def parse_steps(steps: str | Sequence[str]) -> tuple[str, ...]:
    items = [s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps) if s.strip()]
    bad = [s for s in items if s not in STEPS]
    if bad or not items:
        raise ConfigError(f"unknown step(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(STEPS)} "
                          f"(comma-separated, e.g. --steps book,report).")
    return tuple(s for s in STEPS if s in items)


def run(profile: str, steps: str | Sequence[str] = STEPS, overrides: Mapping[str, Any] | None = None,
        restore_only: bool = False) -> dict[str, Path]:
    """Run the chosen steps in order; returns the produced paths. Validates everything first.

    ``restore_only``: the notebooks may reuse or restore runs but never train one (the publishing workflow's
    books, made from the archive in minutes): the first run that would train stops the pipeline with a one-line
    error naming it (:func:`lora_agnews.core.runs.refuse_training`, through ``LORA_AGNEWS_RESTORE_ONLY``).
    """
    if not restore_only:
        return _run(profile, steps, overrides)
    with paths.environment(**{runs.RESTORE_ONLY_ENV: "1"}):  # the kernels and their subprocesses inherit it
        return _run(profile, steps, overrides)


def _run(profile: str, steps: str | Sequence[str], overrides: Mapping[str, Any] | None) -> dict[str, Path]:
    steps = parse_steps(steps)
    overrides = absolute_paths(dict(overrides or {}))
    cfg = config_mod.load(profile, overrides)  # unknown keys / wrong types: ConfigError naming the key
    if "notebooks" in steps:
        from .core.archive import ArchiveError, check_archive_dir

        try:
            check_archive_dir(profile)  # a directory the project did not write: refused before any notebook
        except ArchiveError as exc:
            raise PipelineError(str(exc)) from None
        config_mod.require_trackers(cfg)  # a tracker whose package is missing: refused before any notebook runs
    if overrides and "notebooks" not in steps:
        say(f"note: -p overrides only change the notebooks step; {', '.join(steps)} render the stored results")
    say(f"pipeline: profile {profile}, steps {', '.join(steps)}" + (f", overrides {overrides}" if overrides else ""))
    produced: dict[str, Path] = {}
    t0 = time.perf_counter()
    if "notebooks" in steps:
        run_notebooks(profile, cfg, overrides)
        produced["notebooks"] = paths.executed_notebooks_dir(profile)
    if "book" in steps:
        produced["book"] = build_book(profile)
    if "report" in steps:
        produced["report"] = build_report(profile)
    say(f"pipeline finished in {time.perf_counter() - t0:.1f} s: " + json.dumps({k: str(v) for k, v in produced.items()}))
    return produced


# --------------------------------------------------------------------------- reproduce
def reproduce(profile: str, overrides: Mapping[str, Any] | None = None, retrain: bool = True) -> dict[str, Path]:
    """Retrain every run of ``profile`` here, compare it with ``archive/<profile>``, then render the book and the
    report with the page "Reproduced on this machine".

    The notebooks run into the reproduced tree (``results/reproduced/<profile>``, :func:`paths.reproduced_tree`)
    with the archive turned off, so every run trains (complete runs of an earlier ``reproduce`` are reused) and
    the profile's own results are not touched; no audit there, the comparison takes its place. The profile's own
    results, which the book shows, are made as ``make all`` makes them (restored from the archive) unless they are
    already complete with the same overrides. ``retrain`` False compares the reproduced tree already there.
    """
    from .reporting.reproduction_reporting import differing, reproduced_line
    from .studies.reproduction import compare_profile

    overrides = absolute_paths(dict(overrides or {}))
    cfg = config_mod.load(profile, overrides)
    require_archived(profile)
    config_mod.require_trackers(cfg)
    if retrain:
        say(f"reproduce: retraining every run of profile {profile} into {paths.reproduced_dir(profile)} "
            f"(archive off)")
        with paths.reproduced_tree(), archive_off():
            run_notebooks(profile, cfg, overrides, audit=False)
    record = compare_profile(profile)
    say(reproduced_line(record))
    for line in differing(record["conclusions"]):
        say(line)
    if not complete_for(profile, cfg, overrides):
        run_notebooks(profile, cfg, overrides)
    return {"reproduction": paths.reproduction_path(profile), "book": build_book(profile),
            "report": build_report(profile)}


def require_archived(profile: str) -> None:
    """A one-line error, before anything runs, where ``archive/<profile>`` cannot be read or holds no run."""
    from .core.archive import ArchiveError, check_archive_dir, manifest

    try:
        check_archive_dir(profile)
        if not manifest(profile)["entries"]:
            raise ArchiveError(f"{paths.archive_dir(profile)} holds no archived run, so there is nothing to reproduce: "
                               f"run and archive the profile first (make all PROFILE={profile}, then python -m "
                               f"lora_agnews archive --profile {profile}).")
    except ArchiveError as exc:
        raise PipelineError(str(exc)) from None


@contextlib.contextmanager
def archive_off() -> Iterator[None]:
    """While open, no run is restored: the archive root is an empty directory, and restore-only is off (the
    kernels and the studies' subprocesses inherit both)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lora-agnews-no-archive-") as empty, \
            paths.environment(LORA_AGNEWS_ARCHIVE=empty, **{runs.RESTORE_ONLY_ENV: None}):
        yield


def complete_for(profile: str, cfg: Config, overrides: Mapping[str, Any]) -> bool:
    """Whether ``results/<profile>`` holds complete results of this results format made with these overrides (the
    book and the report can be rendered from them without running the notebooks again)."""
    try:
        stamp = require_results(profile)
    except PipelineError:
        return False
    return stamp.get("overrides", {}) == json.loads(json.dumps({k: cfg.to_dict()[k] for k in overrides}))


def absolute_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """Local paths among the overrides (data, model_name, tokenizer, distill_logits) made absolute.

    The notebooks execute in build/<profile>/notebooks, so ``-p data ../shared/agnews-subset`` given
    relative to the user's directory would name another place there (or nothing).
    """
    out = dict(overrides)
    for key in ("data", "model_name", "tokenizer", "distill_logits"):
        value = out.get(key)
        if isinstance(value, str) and value not in ("", "hub", "sample", "local") and Path(value).expanduser().exists():
            out[key] = str(Path(value).expanduser().resolve())
    return out
