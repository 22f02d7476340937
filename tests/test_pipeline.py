"""The research pipeline: notebooks (papermill) -> jupyter-book -> LaTeX report.

Fast tests check the notebooks as stored (parameters, no outputs) and the validation that runs
before anything executes. Tests marked ``pipeline`` execute kernels: one failing run, and the
whole smoke-profile pipeline once per session (module-scoped fixture), which the others inspect.
"""

from __future__ import annotations

import ast
import functools
import http.server
from html import unescape
import json
import re
import shutil
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nbformat
import numpy as np
import papermill
import pytest

from conftest import read_macros

from lora_agnews import cli, pipeline
from lora_agnews.core import config, paths
from lora_agnews.reporting import findings, text as reporting
from lora_agnews.core.config import ConfigError
from lora_agnews.studies import audit

NOTEBOOK_FILES = [paths.NOTEBOOKS / f"{name}.ipynb" for name in pipeline.NOTEBOOKS]


# --------------------------------------------------------------------------- notebooks as stored
@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_is_stored_clean_and_opens_with_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first, second = nb.cells[0], nb.cells[1]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    assert second.cell_type == "code" and "cfg = notebook_config(globals())" in second.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "notebooks are stored without outputs"
            ast.parse(cell.source)  # a syntax error would only show minutes into a pipeline run
            assert not re.search(r"""["'](\.\./|/|results/|build/)""", cell.source), "no file paths in notebooks"
    for line in first.source.splitlines():
        assert re.match(r"^\w+ = .+  # \S", line), f"parameter line without a trailing comment: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_parameters_are_config_keys_with_demo_values(path: Path) -> None:
    declared = papermill.inspect_notebook(str(path))
    demo = config.load("demo")
    assert "profile" in declared and ast.literal_eval(declared["profile"]["default"]) == "demo"
    for name, info in declared.items():
        assert name in config.keys(), f"{path.name}: '{name}' is not a config key"
        assert config.coerce(name, ast.literal_eval(info["default"])) == getattr(demo, name), name
        assert info["help"], f"{path.name}: '{name}' lacks its comment"
    lines = [line for line in nbformat.read(path, as_version=4).cells[0].source.splitlines() if line.strip()]
    assert len(declared) == len(lines), "papermill skips a parameter line whose comment holds '='"


def test_notebook_config_applies_overrides_and_names_unknown_parameters() -> None:
    cfg = pipeline.notebook_config({"profile": "smoke", "lora_r": 4, "In": [], "_": 3, "np": np})
    assert cfg.lora_r == 4 and cfg.model_name == "tiny-roberta" and cfg.profile == "smoke"
    with pytest.raises(ConfigError, match="'lora_rr'.*lora_r"):
        pipeline.notebook_config({"profile": "smoke", "lora_rr": 4})
    with pytest.raises(ConfigError, match="'lora_r' expects int"):
        pipeline.notebook_config({"profile": "smoke", "lora_r": "four"})
    with pytest.raises(ConfigError, match="profile"):
        pipeline.notebook_config({"lora_r": 4})


def test_papermill_gets_profile_declared_and_overridden_keys_typed() -> None:
    cfg = config.load("smoke", {"max_eval_samples": 40})
    params = pipeline.notebook_parameters("smoke", cfg, NOTEBOOK_FILES[0], ("max_eval_samples",))
    assert set(config.read_profile("smoke")) <= set(params)
    assert params["profile"] == "smoke" and params["max_eval_samples"] == 40
    assert params["data"] == cfg.data  # declared by 01, not by smoke's YAML: the profile's value all the same
    assert isinstance(params["epochs"], float) and params["budget"] == cfg.budget


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_an_override_of_a_key_no_notebook_declares_reaches_the_notebook_config(path: Path) -> None:
    """A parameters cell lists only a reader's knobs; every other key still arrives through papermill."""
    cfg = config.load("smoke", {"val_fraction": 0.2, "compile": True})
    params = pipeline.notebook_parameters("smoke", cfg, path, ("val_fraction", "compile"))
    declared = papermill.inspect_notebook(str(path))
    namespace = {k: ast.literal_eval(v["default"]) for k, v in declared.items()} | params  # papermill's order
    assert "val_fraction" not in declared and pipeline.notebook_config(namespace) == cfg


def test_unknown_or_mistyped_parameters_fail_before_anything_runs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="lora_rr"):
        pipeline.run("smoke", overrides={"lora_rr": 4})
    with pytest.raises(ConfigError, match="'lora_r' expects int"):
        pipeline.run("smoke", overrides={"lora_r": "abc"})
    with pytest.raises(ConfigError, match="unknown step"):
        pipeline.run("smoke", steps="notebooks,pdf")
    assert cli.main(["run", "--profile", "smoke", "-p", "lora_rr", "4"]) == 2
    assert "unknown parameter 'lora_rr'" in capsys.readouterr().err
    assert not paths.executed_notebooks_dir("smoke").exists()


@pytest.mark.parametrize("step", ["book", "report"])
def test_book_and_report_refuse_without_complete_results(step: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["run", "--profile", "smoke", "--steps", step]) == 1
    err = capsys.readouterr().err
    assert "make notebooks PROFILE=smoke" in err and "no complete results" in err
    assert not paths.book_build_dir("smoke").exists() and not paths.report_build_dir("smoke").exists()


# --------------------------------------------------------------------------- a failing cell
@pytest.mark.pipeline
def test_failing_cell_stops_the_run_and_keeps_the_partial_notebook(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    stale = pipeline.stamp_path("smoke")
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # a stamp from an earlier successful run must not survive a failing one
    missing = tmp_path / "no-such-data"
    assert cli.main(["run", "--profile", "smoke", "-p", "data", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "notebook 01_exploration failed" in err and "DataError" in err and str(missing) in err
    partial = paths.executed_notebooks_dir("smoke") / "01_exploration.ipynb"
    assert partial.is_file() and str(partial) in err
    errors = [o for c in nbformat.read(partial, as_version=4).cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "DataError"
    assert not (paths.executed_notebooks_dir("smoke") / "02_training.ipynb").exists()
    assert not paths.book_build_dir("smoke").exists() and not paths.report_build_dir("smoke").exists()
    assert not stale.exists()


# --------------------------------------------------------------------------- the whole smoke pipeline
SMOKE_OVERRIDES = {"max_eval_samples": 200, "epochs": 4.0}
STATED = ("The encoder was not pretrained: the accuracy is that of an untrained model",
          "scored on 200 of 400 test rows", "Trained for 4 epoch(s) instead of the profile's 5")
UNPRETRAINED = re.compile(r"(?<!not )(?<!not\n)pretrained encoder")
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run notebooks -> book -> report for the smoke profile once; tests read what it produced."""
    if not shutil.which("latexmk") or not shutil.which("pdftotext"):
        pytest.skip("TeX (latexmk) and poppler-utils (pdftotext) are needed: run `make tex`")
    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(root / "results"))
        mp.setenv("LORA_AGNEWS_BUILD", str(root / "build"))
        mp.setenv("LORA_AGNEWS_CACHE", str(root / "cache"))
        start = time.perf_counter()
        # Two overrides that change what the numbers mean: the book and the report must say so (and
        # scoring half the test split keeps the suite quick).
        produced = pipeline.run("smoke", overrides=SMOKE_OVERRIDES)
        seconds = time.perf_counter() - start
        return {"produced": produced, "seconds": seconds, "results": paths.results_dir("smoke"),
                "notebooks": paths.executed_notebooks_dir("smoke"), "html": pipeline.book_html_dir("smoke"),
                "book_src": paths.build_root() / "smoke" / "book_src", "report": paths.report_build_dir("smoke")}


@pytest.mark.pipeline
def test_all_notebooks_executed_without_errors(smoke_run: dict[str, Any]) -> None:
    assert (smoke_run["results"] / pipeline.STAMP).is_file()
    for name in pipeline.NOTEBOOKS:
        nb = nbformat.read(smoke_run["notebooks"] / f"{name}.ipynb", as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and 'profile = "smoke"' in injected[0].source
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            assert cell.execution_count is not None, f"{name}: a cell was not executed"
            for out in cell.outputs:
                assert out.output_type != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
                assert "Traceback" not in out.get("text", ""), f"{name}: a traceback in the output"


@pytest.mark.pipeline
def test_metrics_json_is_consistent_with_its_confusion_matrix(smoke_run: dict[str, Any]) -> None:
    metrics = json.loads((smoke_run["results"] / "metrics.json").read_text())
    cm = np.asarray(metrics["confusion_matrix"])
    assert cm.shape == (4, 4)
    assert metrics["n_eval"] == cm.sum()
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert [c["support"] for c in metrics["per_class"].values()] == cm.sum(axis=1).tolist()
    training = json.loads((smoke_run["results"] / "training.json").read_text())
    assert training["saved_parameters"] == training["parameter_breakdown"]["total"] <= training["config"]["budget"]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        if tag == "script" and a.get("src", "").startswith(("http:", "https:", "//")):
            self.external.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet" and a.get("href", "").startswith(("http:", "https:", "//")):
            self.external.append(a["href"])


def _page(html_dir: Path, name: str) -> tuple[str, _Images]:
    text = (html_dir / name).read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(text)
    return text, parser


@pytest.mark.pipeline
def test_book_pages_exist_and_show_the_confusion_matrix(smoke_run: dict[str, Any]) -> None:
    html = smoke_run["html"]
    assert (html / "index.html").is_file()  # jupyter-book writes it as a redirect to the root page, intro.html
    pages = ["intro.html", "results.html"] + [f"notebooks/{n}.html" for n in pipeline.NOTEBOOKS]
    for name in pages:
        text, parser = _page(html, name)
        assert "smoke" in text and "not roberta-base" in text, f"{name}: the profile banner is missing"
        flat = " ".join(unescape(re.sub(r"<[^>]+>", " ", text)).split()).replace("\u2019", "'")
        for fact in STATED:
            assert fact in flat, f"{name}: the banner does not say {fact!r}"
        assert not UNPRETRAINED.search(flat), f"{name}: a randomly initialised run is called pretrained"
        assert parser.external == [], f"{name} fetches assets from the network: {parser.external}"
    for name in ("notebooks/03_evaluation.html", "results.html"):
        _, parser = _page(html, name)
        matrices = [img for img in parser.images if img.get("alt", "").startswith("Confusion matrix")]
        assert matrices, f"{name}: no confusion-matrix image"
        src = (html / name).parent / matrices[0]["src"]
        assert src.is_file() and src.stat().st_size > 5000, f"{name}: image {src} is missing"
    text, _ = _page(html, "results.html")
    metrics = json.loads((smoke_run["results"] / "metrics.json").read_text())
    assert f"{100 * metrics['accuracy']:.2f}%" in text


# --------------------------------------------------------------------------- the book in a real browser
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (`make browser`); Playwright never downloads one
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # no connections of its own on a closed network
SEARCH_WORD, SEARCH_CHAPTER = "ablation", "notebooks/04_ablations.html"
# the header text of every table whose right edge passes the article column's (at Playwright's 1280 px viewport)
WIDER_THAN_COLUMN = """ts => ts.filter(t => t.getBoundingClientRect().right > t.closest('article').getBoundingClientRect().right + 1)
                          .map(t => (t.tHead || t).innerText.replace(/\\s+/g, ' ').slice(-40))"""


def _toc_pages(toc_file: Path) -> set[str]:
    """The HTML pages a jupyter-book ``_toc.yml`` lists: root plus every ``file`` of parts/chapters/sections."""
    import yaml

    def files(node: Any) -> list[str]:
        if isinstance(node, list):
            return [f for item in node for f in files(item)]
        if isinstance(node, dict):
            own = [str(node[k]) for k in ("root", "file") if k in node]
            return own + [f for k, v in node.items() if k not in ("root", "file") for f in files(v)]
        return []

    return {re.sub(r"\.(md|ipynb|rst)$", "", f) + ".html" for f in files(yaml.safe_load(toc_file.read_text()))}


@pytest.fixture
def book_server(smoke_run: dict[str, Any]) -> Any:
    """The built smoke book over http on 127.0.0.1 (a free port), served from a thread; the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(smoke_run["html"])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.pipeline
def test_book_in_a_browser_loads_cleanly_searches_and_navigates(smoke_run: dict[str, Any], book_server: str) -> None:
    """Every page in headless Chromium: no console error, page error, failed or external request; every image
    decoded; every table within the page's column and rendered as a table; the profile banner shown; search finds a chapter; the sidebar reaches exactly the toc's pages."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: run `make setup`")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium (needs apt-get)")
    html, base = smoke_run["html"], book_server
    toc = _toc_pages(smoke_run["book_src"] / "_toc.yml")
    problems: list[str] = []

    def rel(url: str) -> str:
        return urlsplit(url).path.removeprefix(urlsplit(base).path)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()

            def only_loopback(route: Any) -> None:
                if urlsplit(route.request.url).hostname != "127.0.0.1":
                    problems.append(f"{rel(page.url)}: fetches from the network: {route.request.url}")
                    route.abort()
                else:
                    route.continue_()

            def console(msg: Any) -> None:
                if msg.type == "error":
                    problems.append(f"{rel(page.url)}: console error: {msg.text} ({msg.location.get('url')})")

            def page_error(exc: Any) -> None:
                problems.append(f"{rel(page.url)}: uncaught error: {str(exc).strip()}")

            context.route("**/*", only_loopback)
            page = context.new_page()
            page.on("console", console)
            page.on("pageerror", page_error)
            page.on("requestfailed", lambda r: problems.append(f"{rel(page.url)}: request failed: {r.url} ({r.failure})"))
            page.on("response", lambda r: r.status >= 400 and problems.append(f"{rel(page.url)}: HTTP {r.status}: {r.url}"))
            images = 0

            def visit(url: str) -> list[str]:
                """Open url, check the page; the sidebar's links (absolute, without fragments)."""
                nonlocal images
                page.goto(url, wait_until="load")
                page.wait_for_load_state("networkidle")
                name = rel(page.url)
                for src, width in page.eval_on_selector_all("img", "is => is.map(i => [i.currentSrc || i.src, i.naturalWidth])"):
                    images += 1
                    if not width:
                        problems.append(f"{name}: image not loaded: {src}")
                for header in page.eval_on_selector_all("article.bd-article table", WIDER_THAN_COLUMN):
                    problems.append(f"{name}: a table is wider than the page's column and is cut off or scrolls "
                                    f"(its header ends {header!r})")
                if page.eval_on_selector_all("article.bd-article p", "ps => ps.some(p => p.innerText.includes('| ---'))"):
                    problems.append(f"{name}: a Markdown table is printed as text (a paragraph of pipes)")
                banner = page.locator("aside.bd-header-announcement")
                if not (banner.count() == 1 and banner.is_visible() and "smoke profile:" in banner.inner_text()):
                    problems.append(f"{name}: the announcement banner is missing or hidden")
                return [link.split("#")[0] for link in
                        page.eval_on_selector_all("nav.bd-docs-nav a[href]", "as => as.map(a => a.href)")]

            # The start page: index.html redirects to the toc's root; from there, the sidebar, page by page.
            page.goto(base + "index.html")
            page.wait_for_url(lambda u: rel(u) != "index.html")
            start = page.url.split("#")[0]
            reached: set[str] = set()
            queue = [start]
            while queue:
                url = queue.pop()
                if rel(url) in reached:
                    continue
                reached.add(rel(url))
                queue += [link for link in visit(url) if link.startswith(base)]
            if rel(start) not in toc:
                problems.append(f"index.html leads to {rel(start)}, not a page of the toc")
            if reached != toc:
                problems.append(f"the sidebar reaches {sorted(reached - toc)} beyond the toc and misses "
                                f"{sorted(toc - reached)} of it")
            others = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                            if not p.relative_to(html).parts[0].startswith("_"))
            for name in others:
                if name not in reached and name != "index.html":
                    visit(base + name)
            if images < 5:
                problems.append(f"only {images} images in the whole book: the figures are missing")

            chapter_text = " ".join(re.sub(r"<[^>]+>", " ", (html / SEARCH_CHAPTER).read_text()).split()).lower()
            assert SEARCH_WORD in chapter_text, f"pick another SEARCH_WORD: {SEARCH_WORD!r} is not in {SEARCH_CHAPTER}"
            page.goto(f"{base}search.html?q={SEARCH_WORD}", wait_until="load")
            try:
                summary = page.wait_for_selector("#search-results p.search-summary", timeout=20_000).inner_text()
            except sync_api.TimeoutError:
                summary = "the search did not finish in 20 s"
            hits = [rel(a.split("#")[0].split("?")[0]) for a in
                    page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")]
            if SEARCH_CHAPTER not in hits:
                problems.append(f"search for {SEARCH_WORD!r} does not find {SEARCH_CHAPTER}: {hits} ({summary})")
            if not set(hits) <= toc:
                problems.append(f"search results outside the toc: {sorted(set(hits) - toc)}")
        finally:
            browser.close()
    assert not problems, "in the browser:\n" + "\n".join(dict.fromkeys(problems))


@pytest.mark.pipeline
def test_report_pdf_has_the_accuracy_and_the_confusion_matrix(smoke_run: dict[str, Any]) -> None:
    pdf = smoke_run["report"] / "main.pdf"
    assert pdf.is_file()
    macros = read_macros(smoke_run["results"] / "tex" / "macros_evaluation.tex")
    metrics = json.loads((smoke_run["results"] / "metrics.json").read_text())
    assert macros["TestAccuracy"] == paths.pct(metrics["accuracy"])
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split()).replace("\u2019", "'")
    assert f"{macros['TestAccuracy']} % accuracy" in flat or f"{macros['TestAccuracy']}%" in flat.replace(" %", "%")
    assert "not roberta-base results" in flat and "smoke" in flat
    for fact in STATED:
        assert fact in flat, f"the report does not say {fact!r}"
    assert not UNPRETRAINED.search(flat), "the report calls a randomly initialised run pretrained"
    assert "Parameters changed from the profile's values: 2" in flat and "Profile value This run" in flat
    for key in SMOKE_OVERRIDES:
        assert key in flat, f"the report does not list the override {key}"
    assert "Confusion matrix on the test split" in flat
    fls = (smoke_run["report"] / "main.fls").read_text()
    assert re.search(r"^INPUT .*figures/+confusion_matrix\.pdf$", fls, re.M), "the confusion matrix PDF was not included"
    assert "Row-normalised (recall on the diagonal)" in flat, "the confusion matrix figure's own text is not in the PDF"
    assert "??" not in flat, "unresolved references or citations in the report"


@pytest.mark.pipeline
def test_merging_study_reaches_the_book_and_the_report(smoke_run: dict[str, Any]) -> None:
    """Notebook 05 on the smoke profile: three tasks of 4, 2 and 5 classes, every way of scoring them, the
    figure in the book and the report, the report's sentence equal to the macro the notebook wrote."""
    saved = json.loads((smoke_run["results"] / "merging.json").read_text())
    assert [(t["name"], len(t["labels"])) for t in saved["tasks"]] == [("agnews", 4), ("reviews", 2), ("tickets", 5)]
    methods = {(r["task"], r["method"]) for r in saved["rows"]}
    assert len(methods) == 3 * (len(saved["combinations"]) + 3) == 30
    assert saved["settings"]["task_facts"]["tickets"]["data_source"].endswith("data/tasks/tickets")
    page = (smoke_run["html"] / "notebooks" / "05_merging.html").read_text(encoding="utf-8")
    assert "merging_accuracy" in page and "multi-task" in page
    assert (smoke_run["results"] / "figures" / "merging_accuracy.pdf").is_file()
    macros = read_macros(smoke_run["results"] / "tex" / "macros_merging.tex")
    assert macros["MergeTaskNames"] == "agnews, reviews, tickets"
    text = subprocess.run(["pdftotext", "-layout", str(smoke_run["report"] / "main.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "Merging task adapters" in flat and f"the best merge is {macros['MergeBest']}" in flat
    results = (smoke_run["html"] / "results.html").read_text(encoding="utf-8")
    assert "merging_accuracy.png" in results


@pytest.mark.pipeline
def test_quantization_study_reaches_the_book_and_the_report(smoke_run: dict[str, Any]) -> None:
    """Notebook 06 on the smoke profile: a full-precision and an NF4 run, each in its own process (its own peak
    memory), paired on the same test rows; the table, figure and sentence in the book and the report."""
    saved = json.loads((smoke_run["results"] / "quantization.json").read_text())
    assert saved["settings"]["schemes"] == ["none", "nf4"] and saved["settings"]["isolated"]
    runs = {r["scheme"]: r for r in saved["runs"]}
    assert runs["nf4"]["base_bytes"] < runs["none"]["base_bytes"] == runs["nf4"]["base_bytes_fp32"]
    assert runs["nf4"]["trainable_params"] == runs["none"]["trainable_params"]
    assert all(r["process_peak_rss_bytes"] > 0 and r["seconds_per_step"] > 0 for r in saved["runs"])
    assert runs["nf4"]["accuracy"] > 0.5, "the NF4 smoke run learns (chance: 0.25)"
    page = (smoke_run["html"] / "notebooks" / "06_quantization.html").read_text(encoding="utf-8")
    assert "NF4 (4-bit)" in page and "quantization" in page
    assert (smoke_run["results"] / "figures" / "quantization.pdf").is_file()
    macros = read_macros(smoke_run["results"] / "tex" / "macros_quantization.tex")
    text = subprocess.run(["pdftotext", "-layout", str(smoke_run["report"] / "main.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "A quantized frozen base" in flat and macros["QuantNfourBaseMiB"] in flat
    results = (smoke_run["html"] / "results.html").read_text(encoding="utf-8")
    assert "quantization.png" in results and macros["QuantNfourDifference"] in results


@pytest.mark.pipeline
def test_the_multi_label_section_reaches_the_book_and_the_report(smoke_run: dict[str, Any]) -> None:
    """Notebook 03's multi-label section on the smoke profile: one run of the profile's recipe on the shipped
    label-set sample in the runs store, audited; its scores, per-label table and figures in the book and the report."""
    saved = json.loads((smoke_run["results"] / "multilabel.json").read_text())
    m = saved["metrics"]
    assert m["kind"] == "multi_label" and m["labels"] == ["World", "Sports", "Business", "Sci/Tech"]
    assert set(m["intervals"]) >= {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"}
    assert saved["data"]["splits"]["test"]["examples"] == m["n_eval"] == SMOKE_OVERRIDES["max_eval_samples"]
    run = smoke_run["results"] / "runs" / "multilabel"
    audited = {c["run"]: c for c in json.loads((smoke_run["results"] / "audit.json").read_text())["checks"]}
    assert audited["runs/multilabel"]["reproduced"] and audited["runs/multilabel"]["n_test"] == m["n_eval"]
    assert json.loads((run / "metrics.json").read_text())["micro_f1"] == m["micro_f1"]
    for figure in ("multilabel_per_label_f1", "multilabel_cooccurrence"):
        assert (smoke_run["results"] / "figures" / f"{figure}.pdf").is_file()
        assert (smoke_run["results"] / "figures" / f"{figure}.png").is_file()
    macros = read_macros(smoke_run["results"] / "tex" / "macros_multilabel.tex")
    page = (smoke_run["html"] / "notebooks" / "03_evaluation.html").read_text(encoding="utf-8")
    assert "A multi-label task" in page and "Hamming loss" in page and "multilabel_cooccurrence" in page
    results = (smoke_run["html"] / "results.html").read_text(encoding="utf-8")
    assert "multilabel_per_label_f1.png" in results and macros["MultilabelMicroFOne"] in results
    text = subprocess.run(["pdftotext", "-layout", str(smoke_run["report"] / "main.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "A multi-label task" in flat and f"micro F1 {macros['MultilabelMicroFOne']}" in flat


@pytest.mark.pipeline
def test_macros_files_are_complete_and_distinct(smoke_run: dict[str, Any]) -> None:
    names: list[str] = []
    for notebook in reporting.NOTEBOOK_MACRO_FILES:
        names += list(read_macros(smoke_run["results"] / "tex" / f"macros_{notebook}.tex"))
    assert len(names) == len(set(names)), "a macro is defined twice"
    print(f"smoke pipeline wall time: {smoke_run['seconds']:.0f} s")


@pytest.mark.parametrize("agreement, expected", [(1.0, "100.00%"), (0.9, "WARNING"), (None, "not checked")])
def test_rescored_summary_states_the_agreement(agreement: float | None, expected: str) -> None:
    scored = pipeline.Rescored({"n_eval": 1200}, np.zeros((1, 4)), np.zeros((1, 4)), ["t"], np.zeros(1),
                               Path("/x/adapter"), agreement)
    text = scored.summary()
    assert "test examples: 1,200" in text and expected in text
    assert ("WARNING" in text) == (agreement is not None and agreement < 0.99)


@pytest.mark.pipeline
def test_the_audit_reloads_every_saved_model_and_the_book_and_report_show_it(smoke_run: dict[str, Any]) -> None:
    """Every run with an adapter, every merged combination, the study's floors and multi-task model are re-scored in a
    fresh process, and the TF-IDF baseline is refitted; all reproduce."""
    from lora_agnews.studies import audit

    record = json.loads((smoke_run["results"] / audit.AUDIT_FILE).read_text())
    with_adapters = audit.audited_runs(smoke_run["results"])
    merges = json.loads((smoke_run["results"] / "merging.json").read_text())
    expected = len(with_adapters) + len(merges["tasks"]) * (len(merges["combinations"]) + 2)  # + floor, multi-task
    assert record["runs"] == expected and record["all_reproduced"] and record["reproduced"] == expected
    names = {c["run"] for c in record["checks"]}
    assert "runs/main" in names and any(n.startswith("runs/quantization") for n in names)
    assert any(n.startswith("merging: ") for n in names)
    assert any(n.endswith(" / head only") for n in names) and any(n.endswith(" / multi-task") for n in names)
    assert record["baseline"]["reproduced"]
    stamp = json.loads((smoke_run["results"] / pipeline.STAMP).read_text())
    assert stamp["audit"]["runs"] == expected
    page = (smoke_run["html"] / "results.html").read_text(encoding="utf-8")
    assert f"All {expected} saved models" in page
    text = subprocess.run(["pdftotext", "-layout", str(smoke_run["report"] / "main.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert f"All {expected} saved models" in " ".join(text.split())


@pytest.mark.pipeline
def test_a_saved_model_that_changed_fails_the_audit_naming_it(smoke_run: dict[str, Any], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter whose head no longer gives the recorded logits: the audit names the run and both accuracies."""
    from safetensors.torch import load_file, save_file

    from lora_agnews.studies import audit

    results = tmp_path / "results" / "smoke"
    shutil.copytree(smoke_run["results"], results, ignore=shutil.ignore_patterns("checkpoints"))
    monkeypatch.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))
    weights = results / "runs" / "main" / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    head = [k for k in tensors if "classifier" in k and k.endswith("weight")]
    tensors[head[-1]] = tensors[head[-1]].flip(0).contiguous()  # the classes' rows swapped
    save_file(tensors, weights)
    for name in ("merging_logits.npz", "merging.json"):  # the other models are audited above; keep this one quick
        (results / name).unlink()
    for other in (results / "runs").iterdir():
        if other.name != "main":
            shutil.rmtree(other)
    with pytest.raises(audit.AuditError, match=r"runs/main: does not reproduce: recorded [\d.]+%, re-scored [\d.]+%"):
        audit.audit_profile("smoke")
    assert not json.loads((results / audit.AUDIT_FILE).read_text())["all_reproduced"]


# macros that say where and when the results were made: they differ between a computation and a restore by design
SITTING_MACROS = {"macros_audit.tex", "macros_provenance.tex"}


@pytest.mark.pipeline
def test_a_profile_restored_from_the_archive_renders_the_same_macros_and_tables(smoke_run: dict[str, Any],
                                                                                tmp_path: Path) -> None:
    """Compute (the module's run), archive, wipe results/, restore: nothing trains, the audit passes in its fresh
    process, every macro and table is the same, and the provenance says restored, never computed here."""
    from lora_agnews.core import archive

    computed = smoke_run["results"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(computed.parent))
        mp.setenv("LORA_AGNEWS_ARCHIVE", str(tmp_path / "archive"))
        done = archive.archive_profile("smoke")
        kept = archive.keep_studies("smoke", findings.STUDY_RESULTS)
        assert done["entries"] == len(archive.sources("smoke")) > 0
        assert done["bytes"] < 5_000_000, f"the smoke archive takes {done['bytes']:,} bytes: it is committed, keep it small"
        mp.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))  # wiped: an empty results tree
        mp.setenv("LORA_AGNEWS_BUILD", str(tmp_path / "build"))
        pipeline.run("smoke", steps="notebooks", overrides=SMOKE_OVERRIDES)
        restored = paths.results_dir("smoke")
        stamp = json.loads((restored / pipeline.STAMP).read_text())
    sitting = stamp["archive"]
    assert sitting["trained"] == 0 and sitting["restored"] == len(archive_sources(restored)) and not sitting["stale"]
    assert stamp["audit"]["reproduced"] == stamp["audit"]["runs"] > 0
    before, after = computed / "tex", restored / "tex"
    assert sorted(p.name for p in before.glob("*.tex")) == sorted(p.name for p in after.glob("*.tex"))
    for path in sorted(before.glob("*.tex")):
        if path.name in SITTING_MACROS:
            continue
        if path.name.startswith("macros_"):
            assert read_macros(after / path.name) == read_macros(path), path.name
        else:
            assert (after / path.name).read_text() == path.read_text(), path.name
    provenance = read_macros(after / "macros_provenance.tex")
    assert provenance["RunsTrained"] == "0" and "restored from the archive, computed 20" in provenance["ProvenanceSentence"]
    # the study results the archive keeps for the generated findings are what the restored runs give again
    assert {audit.AUDIT_FILE, "statistics.json", "merging.json"} <= set(kept)
    for name in set(kept) - {audit.AUDIT_FILE}:  # the audit is the sitting's own, and so are a study's own seconds
        archived = json.loads((tmp_path / "archive" / "smoke" / archive.STUDIES / name).read_text())
        again = json.loads((restored / name).read_text())
        assert without_seconds(numbers(archived)) == without_seconds(numbers(again)), name


def without_seconds(found: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in found.items() if "/seconds" not in k}


def numbers(value: Any, path: str = "") -> dict[str, float]:
    """Every number in a JSON value by its path (paths and other strings left out: the archive writes them portable)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{path}[{i}]").items()}
    if isinstance(value, float) and value != value:
        return {path: "nan"}
    return {path: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else {}


def archive_sources(results: Path) -> list[Path]:
    """Run records (and study records) under ``results/runs``: what a restore must have filled."""
    from lora_agnews.core import archive, runs

    found = {p.parent for p in (results / "runs").rglob(runs.RUN_FILE)}
    found |= {p.parent for name in archive.STUDY_RECORDS for p in (results / "runs").rglob(name)}
    return sorted(found)


# --------------------------------------------------------------------------- the plan and the engines (lora_agnews.plan)
@pytest.mark.pipeline
def test_the_plan_names_exactly_the_models_the_notebooks_computed(smoke_run: dict[str, Any]) -> None:
    """After the notebooks ran, every model of the plan is complete, and the models under results/runs are exactly
    the plan's (a model the plan reads at another path, as the seed study reads the main run, has no directory)."""
    from lora_agnews import plan

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(smoke_run["results"].parent))
        made = plan.make("smoke", SMOKE_OVERRIDES)
    assert {p.status for p in made.items} <= {"complete", "same as runs/main", "over budget"}, plan.lines(made)
    assert not made.to_compute() and not made.pending
    planned = {smoke_run["results"] / p.job.rel for p in made.items if p.status == "complete" and not p.where}
    # the merged scores are computed by notebook 05 from the task adapters the plan lists, not trained
    assert planned == {d for d in archive_sources(smoke_run["results"]) if not (d / "merged.json").is_file()}


# measured, not computed: wall times, rates, memory, where and when (they differ between two local runs too)
ENGINE_DIFFERENT = re.compile(r"second|runtime|_s$|rss|memory|device|date|_at$|/at$|started|finished|updated|/pid|/host")


@pytest.mark.slow
@pytest.mark.pipeline
def test_ray_computes_the_smoke_profile_with_the_numbers_of_the_local_engine(smoke_run: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    """A local Ray cluster (2 CPUs, two workers) computes the smoke plan; the notebooks then train nothing, the audit
    re-scores every saved model, and every number of the study results is the local engine's (timings aside), up to
    the last bits that the number of torch threads changes."""
    pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install -e '.[ray]'")
    args = [a for k, v in SMOKE_OVERRIDES.items() for a in ("-p", k, str(v))]
    with pytest.MonkeyPatch.context() as mp:
        for name in ("RESULTS", "BUILD", "ARCHIVE"):
            mp.setenv(f"LORA_AGNEWS_{name}", str(tmp_path / name.lower()))
        assert cli.main(["run", "--profile", "smoke", "--steps", "notebooks", "--engine", "ray", "--workers", "2",
                         *args]) == 0
        results = paths.results_dir("smoke")
    stamp = json.loads((results / pipeline.STAMP).read_text())
    # every model comes back from a worker; only the merged scores, computed from the task adapters, are notebook 05's
    merged = [d for d in archive_sources(results) if (d / "merged.json").is_file()]
    assert stamp["archive"]["trained"] == len(merged) == 1
    assert stamp["archive"]["restored"] == len(archive_sources(results)) - len(merged)
    assert stamp["audit"]["reproduced"] == stamp["audit"]["runs"] == json.loads(
        (smoke_run["results"] / pipeline.STAMP).read_text())["audit"]["runs"]
    local = smoke_run["results"]
    for name in ("statistics.json", "ablation.json", "merging.json", "quantization.json", "multilabel.json",
                 "training.json", "evaluation.json"):
        if (local / name).is_file():
            mine, theirs = (numbers(json.loads((p / name).read_text())) for p in (results, local))
            kept = {k: v for k, v in theirs.items() if not ENGINE_DIFFERENT.search(k.lower())}
            # a worker's one torch thread rounds the last bits of training otherwise than the local engine's two
            # (smoke main run: largest test-logit difference 2.1e-4, identical labels): equal up to that
            assert {k: mine.get(k) for k in kept} == pytest.approx(kept, abs=1e-3), name


@pytest.mark.pipeline
@pytest.mark.slow
def test_reproduce_retrains_every_run_compares_it_with_the_archive_and_renders_the_page(smoke_run: dict[str, Any],
                                                                                       tmp_path: Path) -> None:
    """`make reproduce` on the smoke profile: the module's runs archived, every run retrained here with the archive
    off (into results/reproduced/smoke), compared and rendered. On this machine every retrained model gives its
    archived labels and every conclusion is the same; the book has the page, the report the section, and the
    profile's own results are not touched (complete with these overrides: only the book and report are rebuilt)."""
    from lora_agnews.core import archive
    from lora_agnews.reporting import reproduction_reporting
    from lora_agnews.studies.reproduction import COMPARED, read_reproduction

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(smoke_run["results"].parent))  # archived from where it was computed
        mp.setenv("LORA_AGNEWS_ARCHIVE", str(tmp_path / "archive"))
        entries = archive.archive_profile("smoke")["entries"]
        archive.keep_studies("smoke", findings.STUDY_RESULTS)
        mp.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))  # a copy, so the module's book stays as it was
        mp.setenv("LORA_AGNEWS_BUILD", str(tmp_path / "build"))
        shutil.copytree(smoke_run["results"], paths.results_dir("smoke"))
        shutil.copytree(smoke_run["notebooks"], paths.executed_notebooks_dir("smoke"))
        records = {p: p.stat().st_mtime_ns for p in paths.runs_dir("smoke").rglob("*.json")}
        produced = pipeline.reproduce("smoke", SMOKE_OVERRIDES)
        record = read_reproduction("smoke")
        assert {p: p.stat().st_mtime_ns for p in paths.runs_dir("smoke").rglob("*.json")} == records
        assert (paths.reproduced_dir("smoke") / pipeline.STAMP).is_file()
    s = record["summary"]
    assert {r["entry"] for r in record["runs"] if r["status"] == COMPARED} == set(
        json.loads((tmp_path / "archive" / "smoke" / archive.MANIFEST).read_text())["entries"]) and len(
        {r["entry"] for r in record["runs"]}) == entries
    assert s["same_setting"] and s["identical"] == s["compared"] and s["same_conclusions"] == s["conclusions"] > 0
    page = unescape((produced["book"].parent / "reproduced.html").read_text())
    assert reproduction_reporting.TITLE in page and f"{s['identical']} of {s['compared']} retrained models" in page
    text = subprocess.run(["pdftotext", "-layout", str(produced["report"]), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = " ".join(text.split())
    assert reproduction_reporting.TITLE in flat and f"{s['identical']} of {s['compared']} retrained models" in flat
    assert "??" not in flat
