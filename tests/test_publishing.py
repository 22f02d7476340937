"""What others need to copy, cite and publish the repository: licence, citation metadata, the model card's
licence, the GitHub Pages workflow (checked offline: it cannot run here) and the published book's metadata.

Offline and fast (seconds): the validators are PyPI packages pinned in the ``test`` extra, each with its
schema bundled: check-jsonschema (the CFF 1.2.0 schema, GitHub's workflow schema) and zizmor (``--offline``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from lora_agnews.core import paths
from lora_agnews import pipeline

ROOT = paths.ROOT
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
CITATION = ROOT / "CITATION.cff"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
GUIDE = paths.BOOK / "guide"  # the manual (static pages of every profile's book); the README points there
RUNNING = (GUIDE / "running.md").read_text(encoding="utf-8")  # set-up, profiles, the make targets
# The works the guide, the book and CITATION.cff ask readers to cite: report/references.bib key -> name.
CITED = {"zhang2015character": "AG News", "hu2021lora": "LoRA", "liu2019roberta": "RoBERTa",
         "mangrulkar2022peft": "PEFT"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tool(name: str) -> str:
    """A console script installed next to this interpreter (the .venv), else on PATH."""
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.is_file() else shutil.which(name)
    assert found, f"{name} is not installed: run `make setup` (it is in pyproject's test extra)"
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, cwd=ROOT)


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return _run(_tool("check-jsonschema"), "--builtin-schema", schema, str(path))


# --------------------------------------------------------------------------- licence
def test_license_file_is_mit_and_matches_pyproject_spdx() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    project = PYPROJECT["project"]
    assert project["license"] == "MIT", "an SPDX expression, not the deprecated table form"
    assert project["license-files"] == ["LICENSE"]
    # setuptools reads an SPDX `license` string from 77.0 on (PEP 639); older ones refuse it.
    floor = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert floor == ["setuptools>=77"]


def test_pyproject_license_is_accepted_by_setuptools_without_warnings() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the table form `license = {text = ...}` warns (deprecated)
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "MIT"
    assert dist.metadata.license_files == ["LICENSE"]


def test_citation_cff_names_the_same_licence_and_version() -> None:
    cff = yaml.safe_load(CITATION.read_text(encoding="utf-8"))
    assert cff["license"] == PYPROJECT["project"]["license"]
    assert cff["version"] == PYPROJECT["project"]["version"]
    assert cff["type"] == "software"


# --------------------------------------------------------------------------- CITATION.cff
def test_citation_cff_is_valid_cff_1_2_0() -> None:
    from check_jsonschema.builtin_schemas import get_builtin_schema

    schema = get_builtin_schema("vendor.citation-file-format")
    assert schema["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"
    proc = check_jsonschema("vendor.citation-file-format", CITATION)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_cff_validator_rejects_an_invalid_file(tmp_path: Path) -> None:
    """The check above can fail: a wrong version, a URL without scheme and a non-SPDX licence are reported."""
    bad = CITATION.read_text(encoding="utf-8").replace("cff-version: 1.2.0", "cff-version: 1.1.0")
    bad = bad.replace('url: "https://github.com/huggingface/peft"', 'url: "github.com/huggingface/peft"')
    bad = bad.replace("license: MIT", "license: MIT-ish")
    (tmp_path / "CITATION.cff").write_text(bad, encoding="utf-8")
    proc = check_jsonschema("vendor.citation-file-format", tmp_path / "CITATION.cff")
    assert proc.returncode == 1
    for field in ("cff-version", "url", "license"):
        assert field in proc.stdout


def _bib_entries() -> dict[str, dict[str, str]]:
    text = (ROOT / "report" / "references.bib").read_text(encoding="utf-8")
    entries = {}
    for key, body in re.findall(r"@\w+\{(\w+),(.*?)\n\}", text, flags=re.S):
        fields = dict(re.findall(r"(\w+)\s*=\s*\{(.*?)\},?\s*$", body, flags=re.M))
        entries[key] = fields
    return entries


def _plain(title: str) -> str:
    return re.sub(r"[{}]", "", title)


def test_citation_cff_references_carry_the_bibliography_data() -> None:
    bib = _bib_entries()
    refs = yaml.safe_load(CITATION.read_text(encoding="utf-8"))["references"]
    by_title = {r["title"]: r for r in refs}
    assert len(refs) == len(CITED)
    for key in CITED:
        entry = bib[key]
        ref = by_title[_plain(entry["title"])]
        assert str(ref["year"]) == entry["year"], key
        families = [a.split(",")[0].strip() for a in entry["author"].split(" and ")]
        assert [a["family-names"] for a in ref["authors"]] == families, key
        if "url" in entry:
            assert ref["url"] == entry["url"], key


# --------------------------------------------------------------------------- model card
@pytest.mark.parametrize("data", ["hub", "sample"])
def test_model_card_states_the_licence_and_the_ag_news_condition(tmp_path: Path, data: str) -> None:
    from lora_agnews.core import config
    from lora_agnews.core.card import read_model_card, write_model_card

    cfg = config.load("smoke", {"data": data})
    metrics = {"accuracy": 0.9, "macro_f1": 0.89, "trainable_params": 12_345, "n_eval": 100,
               "labels": ["World", "Sports", "Business", "Sci/Tech"]}
    write_model_card(tmp_path, cfg, metrics)
    meta = read_model_card(tmp_path)
    assert meta["license"] == "mit"
    assert meta["license"].upper() == PYPROJECT["project"]["license"]
    body = (tmp_path / "README.md").read_text(encoding="utf-8").split("---\n", 2)[2]
    assert "## License" in body
    assert "AG News is distributed by its authors for research and non-commercial use only" in body
    assert "inherit that condition" in body
    if data == "hub":
        assert "use this adapter for research and non-commercial purposes only" in body


# --------------------------------------------------------------------------- the workflow
def _workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as a boolean
    return doc


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def test_workflow_matches_github_workflow_schema() -> None:
    proc = check_jsonschema("vendor.github-workflows", WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_passes_zizmor() -> None:
    """GitHub Actions linter, offline (no GitHub API): pinned actions, least permissions, no injection."""
    proc = _run(_tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(WORKFLOW))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _makefile_targets() -> dict[str, list[str]]:
    """Documented Makefile targets (``name: deps ## help``) and their prerequisites."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m[0]: m[1].split() for m in re.findall(r"^([a-zA-Z_-]+):([^=\n#]*)##", text, flags=re.M)}


def test_workflow_runs_the_guide_make_targets_that_ci_uses() -> None:
    """Every command the workflow runs is `make TARGET`, with targets the Makefile documents, the guide's running
    page names and that set up the way .ci/run's `make test` does: they cannot drift apart."""
    runs = [line.strip() for step in _steps(_workflow()) if "run" in step
            for line in step["run"].splitlines() if line.strip()]
    assert runs, "the workflow runs commands"
    targets = _makefile_targets()
    used = []
    for line in runs:
        m = re.fullmatch(r"make (\w[\w-]*)", line)
        assert m, f"workflow command {line!r} is not a make target (use the guide's commands)"
        used.append(m[1])
    assert used == ["setup", "site"], "the workflow sets up, then builds the site"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_targets = re.findall(r"^make (\w[\w-]*)", ci, flags=re.M)
    assert ci_targets == ["test", "test-slow"], "CI runs the README's test command, then the slow tier"
    for target in used + ci_targets:
        assert target in targets, f"make {target} is not a documented Makefile target"
        assert f"`make {target}`" in RUNNING, f"book/guide/running.md does not name `make {target}`"
        if target != "setup":
            assert "setup" in targets[target], f"make {target} must set itself up like make test"


def _make_site_commands(*args: str) -> list[str]:
    """What `make site` would run (make -n: nothing runs), without the set-up's lines."""
    proc = _run("make", "-n", "site", "PY=python", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commands = [c.strip() for line in proc.stdout.splitlines() for c in line.split("&&")]
    return [c for c in commands if c.startswith("python -m lora_agnews")]


def _site_profiles() -> tuple[list[str], list[str]]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    restored = re.search(r"^SITE_RESTORED \?= (.*)$", text, flags=re.M)[1].split()
    trained = re.search(r"^SITE_TRAINED \?= (.*)$", text, flags=re.M)[1].split()
    return restored, trained


def test_make_site_restores_cpu_and_base_without_training_and_links_every_book() -> None:
    restored, trained = _site_profiles()
    assert restored == ["cpu", "base"] and trained == ["demo"]
    commands = _make_site_commands("SITE_ARGS_base=-p data /d -p model_name /m")
    runs = [c for c in commands if " run " in c]
    for profile in restored:
        line = next(c for c in runs if f"--profile {profile} " in c)
        assert "--restore-only" in line.split(), f"{profile} must never train on the runner"
    base = next(c for c in runs if "--profile base " in c)
    assert base.endswith("--restore-only -p data /d -p model_name /m"), "the base archive's overrides reach it"
    demo = next(c for c in runs if "--profile demo " in c)
    assert "--restore-only" not in demo.split()
    assert all("--steps notebooks,book" in c for c in runs)
    assert commands[-1] == "python -m lora_agnews site " + " ".join(restored + trained)
    from lora_agnews import cli

    args = cli.build_parser().parse_args(["run", "--profile", "cpu", "--steps", "notebooks,book", "--restore-only"])
    assert args.restore_only is True


def test_workflow_publishes_the_site_and_deploys_to_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _workflow()
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    restored, _ = _site_profiles()
    assert set(inputs) == {f"{p}_args" for p in restored}, "one input per restored profile: its archive's overrides"
    assert all(i["type"] == "string" and i["default"] == "" for i in inputs.values())
    build, deploy = doc["jobs"]["build"], doc["jobs"]["deploy"]
    for profile in restored:  # to make through the environment, never templated into a script (zizmor)
        assert build["env"][f"SITE_ARGS_{profile}"] == f"${{{{ inputs.{profile}_args }}}}"
    assert build["env"][pipeline.REPOSITORY_URL_ENV] == "${{ github.server_url }}/${{ github.repository }}"
    assert build["env"][pipeline.REPOSITORY_BRANCH_ENV] == "${{ github.ref_name }}"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    monkeypatch.delenv("LORA_AGNEWS_BUILD", raising=False)  # the default build root, as in the workflow
    assert upload["with"]["path"] == paths.site_dir().relative_to(ROOT).as_posix()
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
    assert build["permissions"] == {"contents": "read"} and doc["permissions"] == {}
    for step in _steps(doc):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


# --------------------------------------------------------------------------- the book's metadata
def _context(commit: str = COMMIT) -> dict[str, Any]:
    return {"profile": "demo", "is_paper": False, "banner": True, "profile_note": "A demonstration.", "banner_note": "A demonstration.",
            "model_name": "all-MiniLM-L6-v2", "cfg": {"budget": 1_000_000},
            "stamp": {"finished": "2026-11-30T05:00:00+00:00", "git_commit": commit}}


def _book_config(tmp_path: Path, context: dict[str, Any]) -> dict[str, Any]:
    shutil.copy2(paths.BOOK / "_config.yml", tmp_path / "_config.yml")
    pipeline._write_book_config(tmp_path, context)
    return yaml.safe_load((tmp_path / "_config.yml").read_text(encoding="utf-8"))


def _sphinx_config(tmp_path: Path) -> dict[str, Any]:
    """What jupyter-book makes of the written _config.yml (validated against its schema)."""
    from jupyter_book.config import get_final_config

    config, _ = get_final_config(user_yaml=tmp_path / "_config.yml", cli_config={"latex_individualpages": False},
                                 sourcedir=tmp_path, validate=True, raise_on_invalid=True, use_external_toc=False)
    return config


def test_book_config_has_title_description_date_and_commit(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pipeline.REPOSITORY_URL_ENV, raising=False)
    data = _book_config(tmp_path, _context())
    assert data["title"].endswith("(demo profile)")
    meta = data["sphinx"]["config"]["myst_html_meta"]
    assert "AG News" in meta["description"] and "1,000,000 trainable parameters" in meta["description"]
    assert meta["property=og:title"] == data["title"]
    footer = data["html"]["extra_footer"]
    assert COMMIT[:12] in footer and "2026-11-30T05:00:00+00:00" in footer and "book built" in footer
    assert "<a " not in footer, "no repository: the commit links nowhere"
    assert data["repository"]["url"] == "" and data["html"]["use_repository_button"] is False
    assert data["html"]["announcement"], "the profile banner stays"
    sphinx = _sphinx_config(tmp_path)
    assert sphinx["html_title"] == data["title"]
    assert sphinx["myst_html_meta"]["description"] == meta["description"]
    assert sphinx["html_theme_options"]["extra_footer"] == footer
    assert sphinx["html_theme_options"]["repository_url"] == "", "not jupyter-book's default repository"


def test_book_links_the_repository_only_when_the_variable_is_set(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, "")
    assert _book_config(tmp_path, _context())["repository"]["url"] == ""
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, "https://github.com/example/lora-agnews/")
    data = _book_config(tmp_path, _context(COMMIT + "-dirty"))
    assert data["repository"]["url"] == "https://github.com/example/lora-agnews"
    assert data["html"]["use_repository_button"] is True
    footer = data["html"]["extra_footer"]
    assert f'href="https://github.com/example/lora-agnews/tree/{COMMIT}"' in footer
    assert "uncommitted changes" in footer
    options = _sphinx_config(tmp_path)["html_theme_options"]
    assert options["repository_url"] == "https://github.com/example/lora-agnews"
    assert options["use_repository_button"] is True
    unknown = _book_config(tmp_path, _context("unknown"))["html"]["extra_footer"]
    assert "<code>unknown</code>" in unknown and "<a " not in unknown


def test_a_repository_url_that_is_not_a_url_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, "example/lora-agnews")
    with pytest.raises(pipeline.PipelineError, match=pipeline.REPOSITORY_URL_ENV):
        _book_config(tmp_path, _context())


# --------------------------------------------------------------------------- where readers look
def test_book_intro_page_renders_the_commit_and_keeps_the_bibtex_braces() -> None:
    from lora_agnews.reporting import book_pages

    context = {
        "is_paper": False, "banner": True, "profile": "demo", "profile_note": "A demonstration.",
        "encoder_description": "a frozen pretrained encoder (m)", "data_description": "the sample",
        "rows_sentence": "trained on 90 of 100 training rows", "facts": {"pretrained": True},
        "cfg": {"budget": 1_000_000, "model_name": "m", "data": "sample", "lora_r": 8, "lora_alpha": 16,
                "lora_targets": "query,value", "head": "linear"},
        "training": {"split_sizes": {"train": 90, "validation": 10, "test": 50},
                     "parameter_breakdown": {"total": 12_345}},
        "overrides": {}, "stamp": {"finished": "2026-11-30T05:00:00+00:00", "git_commit": COMMIT},
    }
    page = book_pages.render_template((paths.BOOK / "intro.md").read_text(encoding="utf-8"), context, "intro.md")
    assert f"`{COMMIT}`" in page
    assert "author  = {{The lora-agnews authors}}" in page, "the BibTeX braces survive Jinja"


def test_readme_points_at_citing_licences_and_publishing() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in ("book/guide/citing.md#how-to-cite", "book/guide/citing.md#licences", "book/guide/publishing.md",
                   "(LICENSE)", "(CITATION.cff)"):
        assert target in readme, target


# --------------------------------------------------------------------------- the landing page
def _fake_book(profile: str, monkeypatch: pytest.MonkeyPatch, url: str = "") -> None:
    """A built book as the pipeline leaves it: its HTML and the _config.yml it wrote (title, banner, footer)."""
    html = paths.book_html_dir(profile)
    html.mkdir(parents=True)
    (html / "index.html").write_text(f"<html>{profile} book</html>", encoding="utf-8")
    (html / "_static").mkdir()
    src = paths.book_source_dir(profile)
    src.mkdir(parents=True)
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, url)
    context = {**_context(), "profile": profile, "banner_note": f"{profile} findings <at small scale>."}
    _book_config(src, context)


def _links(page: str) -> list[str]:
    return re.findall(r"href='([^']+)'", page)


def test_the_landing_page_links_exactly_the_books_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_agnews.reporting import site

    for profile in ("cpu", "base", "demo"):
        _fake_book(profile, monkeypatch, url="https://github.com/example/lora-agnews")
    index = site.build_site(["cpu", "demo"])  # base is built but not asked for: not on the site
    page = index.read_text(encoding="utf-8")
    books = [link for link in _links(page) if link.endswith("/index.html")]
    assert books == ["cpu/index.html", "demo/index.html"]
    assert sorted(p.name for p in paths.site_dir().iterdir() if p.is_dir()) == ["cpu", "demo"]
    for link in books:  # each link resolves inside the site, to that profile's book
        target = paths.site_dir() / link
        assert target.read_text(encoding="utf-8") == f"<html>{link.split('/')[0]} book</html>"
    assert (paths.site_dir() / "cpu" / "_static").is_dir()
    assert site.profile_summary("cpu") in page and site.profile_summary("base") not in page
    assert "cpu findings &lt;at small scale&gt;." in page, "each book's banner, escaped"
    assert COMMIT[:12] in page, "each book's provenance (its footer)"
    assert "https://github.com/example/lora-agnews" in _links(page)
    assert "http" not in page.replace("https://github.com/example/lora-agnews", ""), "nothing else is fetched"


def test_the_landing_page_refuses_a_missing_book_or_profile(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    from lora_agnews import cli
    from lora_agnews.core.config import ConfigError
    from lora_agnews.reporting import site

    _fake_book("demo", monkeypatch)
    assert cli.main(["site", "demo", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "profile 'cpu'" in err and "make book PROFILE=cpu" in err
    assert not paths.site_dir().exists(), "nothing written when a book is missing"
    assert cli.main(["site", "demo", "nosuch"]) == 2
    assert "unknown profile 'nosuch'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="each profile once"):
        site.build_site(["demo", "demo"])
    assert cli.main(["site", "demo"]) == 0 and (paths.site_dir() / "demo" / "index.html").is_file()


# --------------------------------------------------------------------------- Colab
def test_colab_buttons_open_the_repository_notebooks_only_for_this_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = pipeline.project_repository()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", own)
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, own + "/")
    monkeypatch.setenv(pipeline.REPOSITORY_BRANCH_ENV, "pages")
    data = _book_config(tmp_path, _context())
    assert data["launch_buttons"]["colab_url"] == pipeline.COLAB_URL
    assert data["repository"] == {"url": own, "path_to_book": "", "branch": "pages"}
    options = _sphinx_config(tmp_path)["html_theme_options"]
    assert options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert options["path_to_docs"] == "" and options["repository_branch"] == "pages"
    monkeypatch.delenv(pipeline.REPOSITORY_BRANCH_ENV)
    assert _book_config(tmp_path, _context())["repository"]["branch"] == "main"
    # a fork that kept pyproject's address: its notebooks would install another repository's code
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, "https://github.com/someone-else/lora-agnews")
    assert _book_config(tmp_path, _context())["launch_buttons"]["colab_url"] == ""
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, "")
    offline = _book_config(tmp_path, _context())
    assert offline["launch_buttons"]["colab_url"] == "" and offline["repository"]["url"] == ""


@pytest.mark.slow
def test_the_colab_link_of_a_built_notebook_page_is_the_repository_notebook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """jupyter-book and sphinx-book-theme, not a copy of their rule, form the link (one notebook, about 20 s)."""
    src = tmp_path / "src"
    shutil.copytree(paths.BOOK / "_ext", src / "_ext")
    shutil.copy2(paths.BOOK / "_config.yml", src / "_config.yml")
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/02_training\n",
                                  encoding="utf-8")
    (src / "intro.md").write_text("# Intro\n", encoding="utf-8")
    (src / "notebooks").mkdir()
    shutil.copy2(paths.NOTEBOOKS / "02_training.ipynb", src / "notebooks" / "02_training.ipynb")
    monkeypatch.setenv(pipeline.REPOSITORY_URL_ENV, pipeline.project_repository())
    monkeypatch.setenv(pipeline.REPOSITORY_BRANCH_ENV, "main")
    pipeline._write_book_config(src, _context())
    out = tmp_path / "out"
    proc = subprocess.run([pipeline._jupyter_book(), "build", str(src), "--path-output", str(out), "--warningiserror"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (out / "_build" / "html" / "notebooks" / "02_training.html").read_text(encoding="utf-8")
    links = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page)
    repo = pipeline.project_repository().removeprefix("https://github.com/")
    assert links == [f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/02_training.ipynb"]
    assert (ROOT / links[0].split("/blob/main/")[1]).is_file(), "the link names the repository's own notebook"


# --------------------------------------------------------------------------- the notebooks' install guard
def _guards() -> dict[str, str]:
    """Each notebook's install guard: the lines of its second cell before the blank line that ends them."""
    import nbformat

    out = {}
    for name in pipeline.NOTEBOOKS:
        source = nbformat.read(paths.NOTEBOOKS / f"{name}.ipynb", as_version=4).cells[1].source
        out[name] = source.split("\n\n", 1)[0]
    return out


def test_every_notebook_opens_with_the_same_short_install_guard() -> None:
    guards = _guards()
    assert len(set(guards.values())) == 1, "the six notebooks carry the identical guard"
    guard = next(iter(guards.values()))
    assert len(guard.splitlines()) <= 3
    assert f"git clone -q {pipeline.project_repository()} " in guard, "it installs pyproject's repository"
    assert "torch" not in guard, "a GPU machine keeps its own torch (pyproject has no torch pin)"
    torch_req = [d for d in PYPROJECT["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert torch_req and "==" not in torch_req[0], "an exact torch pin would replace Colab's CUDA build"


class _FakeIPython:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def system(self, command: str) -> None:
        self.commands.append(command)


def test_the_install_guard_does_nothing_where_the_project_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    guard = next(iter(_guards().values()))
    shell = _FakeIPython()
    path_before = list(sys.path)
    exec(guard, {"get_ipython": lambda: shell})
    assert shell.commands == [] and sys.path == path_before
    # where it does not import (Colab): clone, install editable, and import from the clone in this kernel
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lora_agnews" else real(name, *a))
    monkeypatch.setattr(sys, "path", list(path_before))
    exec(guard, {"get_ipython": lambda: shell})
    assert shell.commands == [f"git clone -q {pipeline.project_repository()} lora-agnews && "
                              f"pip install -q -e lora-agnews"]
    assert sys.path[0] == "lora-agnews"
