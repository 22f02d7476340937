"""The README is a short front door and the guide (book/guide/) holds the manual: links resolve and every guide
page is in the book's table of contents.

Fast (well under a second): text only, no Sphinx build. That the guide pages render is checked by the smoke
pipeline's book build (warnings are errors there, broken cross-references included).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lora_agnews.core import paths
from lora_agnews import pipeline

ROOT = paths.ROOT
README = ROOT / "README.md"
GUIDE = paths.BOOK / "guide"
TOC = paths.BOOK / "_toc.yml"
MAX_README_WORDS = 1_600

# A Markdown link or image target: [text](target) / ![alt](target "title"); not inside code.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
_CODE_SPAN = re.compile(r"`+[^`\n]*`+")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _links(text: str) -> list[str]:
    return _LINK.findall(_prose(text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (and MyST's myst_heading_anchors, the same rules): lower case,
    punctuation removed except hyphens and underscores, each space a hyphen."""
    text = re.sub(r"<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, numbered as GitHub numbers repeated headings (-1, -2, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m[1])
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I) and not target.startswith("//")


def _check_links(page: Path, root: Path) -> list[str]:
    """Broken relative links of ``page``: a missing file, or an anchor that is no heading of the file."""
    broken = []
    for target in _links(page.read_text(encoding="utf-8")):
        if not _relative(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page.resolve()
        if not dest.exists() or root.resolve() not in (dest, *dest.parents):
            broken.append(f"{target}: no such file in the repository")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {dest.name}")
    return broken


def _toc_files() -> list[str]:
    toc = yaml.safe_load(TOC.read_text(encoding="utf-8"))

    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["file"]] if "file" in node else []
            return own + [f for key in ("parts", "chapters", "sections") for f in walk(node.get(key, []))]
        if isinstance(node, list):
            return [f for item in node for f in walk(item)]
        return []

    return [toc["root"], *walk(toc)]


def _guide_pages() -> list[Path]:
    return sorted(GUIDE.glob("*.md"))


# --------------------------------------------------------------------------- the helpers themselves
def test_github_slugs_follow_githubs_rules() -> None:
    assert github_slug("Resuming an interrupted run") == "resuming-an-interrupted-run"
    assert github_slug("Several GPUs (or CPU processes): torchrun / accelerate launch") == \
        "several-gpus-or-cpu-processes-torchrun--accelerate-launch"
    assert github_slug("Real AG News on an ordinary CPU: the `cpu` profile") == \
        "real-ag-news-on-an-ordinary-cpu-the-cpu-profile"
    assert github_slug("The PEFT frontier at roberta-base's size") == "the-peft-frontier-at-roberta-bases-size"
    assert github_slug("`lora_targets` and data_format") == "lora_targets-and-data_format"


def test_link_checker_reports_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## A section\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md) [ok](other.md#a-section) [ok](other.md#a-section-1) [ok](#here)\n"
                    "[bad](missing.md) [bad](other.md#nope) `[code](missing.md)` [web](https://example.org)\n\n"
                    "```\n[fenced](missing2.md)\n```\n\n## Here\n", encoding="utf-8")
    broken = _check_links(page, tmp_path)
    assert broken == ["missing.md: no such file in the repository",
                      "other.md#nope: no heading with the anchor #nope in other.md"]


# --------------------------------------------------------------------------- the README
def test_readme_is_a_short_front_door() -> None:
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= MAX_README_WORDS, f"README.md has {words} words (at most {MAX_README_WORDS}: details go to book/guide/)"


def test_every_relative_link_in_the_readme_resolves() -> None:
    assert _links(README.read_text(encoding="utf-8")), "the README links to the guide"
    assert _check_links(README, ROOT) == []


def test_readme_points_at_every_guide_page() -> None:
    text = README.read_text(encoding="utf-8")
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(text) if _relative(t)}
    for page in _guide_pages():
        assert page.resolve() in linked, f"README.md does not link to {page.relative_to(ROOT)}"
    for notebook in ("02_training", "03_evaluation", "04_ablations"):
        assert (ROOT / "notebooks" / f"{notebook}.ipynb").resolve() in linked, notebook


# --------------------------------------------------------------------------- the guide and the table of contents
def test_every_guide_page_is_in_the_toc_and_every_entry_exists() -> None:
    entries = _toc_files()
    assert len(entries) == len(set(entries)), "an entry is listed twice"
    for entry in entries:
        if entry.startswith("notebooks/"):  # the pipeline copies the executed notebooks there
            assert (ROOT / f"{entry}.ipynb").is_file(), entry
        else:
            assert (paths.BOOK / f"{entry}.md").is_file(), entry
    pages = {p.relative_to(paths.BOOK).with_suffix("").as_posix() for p in _guide_pages()}
    assert pages, "book/guide/ holds the guide"
    assert pages <= set(entries), f"guide pages missing from _toc.yml: {sorted(pages - set(entries))}"


def test_the_toc_has_a_results_part_and_a_guide_part() -> None:
    toc = yaml.safe_load(TOC.read_text(encoding="utf-8"))
    assert toc["format"] == "jb-book" and toc["root"] == "intro"
    captions = [part["caption"] for part in toc["parts"]]
    assert captions[-1] == "Guide" and len(captions) == 2
    results, guide = ([c["file"] for c in part["chapters"]] for part in toc["parts"])
    assert results[0] == "results" and all(f.startswith("notebooks/") for f in results[1:])
    assert results[1:] == [f"notebooks/{n}" for n in pipeline.NOTEBOOKS]
    assert guide[0] == "guide/index" and all(f.startswith("guide/") for f in guide)


def test_the_book_config_gives_headings_anchors() -> None:
    config = yaml.safe_load((paths.BOOK / "_config.yml").read_text(encoding="utf-8"))
    assert config["sphinx"]["config"]["myst_heading_anchors"] >= 3


@pytest.mark.parametrize("page", _guide_pages(), ids=lambda p: p.name)
def test_guide_links_resolve_in_the_book(page: Path) -> None:
    """Links between guide pages (and to the book's notebooks) resolve; files outside book/ are code, not links
    (Sphinx cannot resolve them, and the book is published without the repository)."""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# "), "a guide page opens with its title"
    for target in _links(text):
        if not _relative(target):
            continue
        file_part = target.partition("#")[0]
        dest = (page.parent / file_part).resolve()
        if file_part.startswith("../notebooks/"):
            assert (ROOT / "notebooks" / Path(file_part).name).is_file(), target
            continue
        assert paths.BOOK.resolve() in dest.parents, f"{target}: outside book/ (write a path as `code`)"
    broken = [b for b in _check_links(page, paths.BOOK) if "../notebooks/" not in b]  # notebooks: checked above
    assert broken == []


def test_guide_pages_are_static() -> None:
    """The pipeline renders only book/*.md as templates; the guide is copied as it is, so it holds no Jinja
    statement (a literal {{ appears only in the BibTeX entry's double braces)."""
    for page in _guide_pages():
        text = page.read_text(encoding="utf-8")
        assert "{%" not in text, page.name
        assert re.findall(r"\{\{", text) == (["{{"] if page.name == "citing.md" else []), page.name
