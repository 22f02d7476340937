"""The published site: one landing page that links the books of several profiles, each in a folder of its own.

``python -m lora_agnews site cpu base demo`` (``make site``, which the Pages workflow runs) copies each profile's
built book (``build/<profile>/book/_build/html``) to ``build/site/<profile>/`` and writes ``build/site/index.html``:
per profile, what the profile is (the first sentence of ``configs/<profile>.yaml``), what its results are (the
banner the book carries on every page) and where they come from (the book's footer: commit, dates, runs restored
from the archive). Everything is read from files the pipeline wrote; nothing on the page reaches the network.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from html import escape, unescape
from pathlib import Path
from typing import Sequence

import yaml

from ..core import paths
from ..core.config import ConfigError

TITLE = "LoRA on AG News under 1M trainable parameters"


@dataclass(frozen=True)
class Book:
    """One profile's built book, as the landing page presents it."""

    profile: str
    title: str
    summary: str  # what the profile is (configs/<profile>.yaml)
    results: str  # what its numbers are (the book's banner), plain text
    provenance: str  # the book's footer (HTML the pipeline wrote, escaped there)
    repository: str  # the repository the book links to, or ""


def profile_summary(profile: str) -> str:
    """The first sentence of the comment that opens ``configs/<profile>.yaml``, without the leading ``name:``."""
    lines = []
    for line in paths.profile_path(profile).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    text = re.sub(rf"^{re.escape(profile)}(\s*\([^)]*\))?:\s*", "", text)
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]


def read_book(profile: str) -> Book:
    """What the landing page says about ``profile``'s built book; an error naming the command when it is missing."""
    if profile not in paths.available_profiles():
        raise ConfigError(f"unknown profile '{profile}'; choose from {', '.join(paths.available_profiles())}.")
    index = paths.book_html_dir(profile) / "index.html"
    config = paths.book_source_dir(profile) / "_config.yml"
    if not index.is_file() or not config.is_file():
        raise FileNotFoundError(f"no built book for profile '{profile}' ({index} is missing): run `make book "
                                f"PROFILE={profile}` (after its notebooks) before the site.")
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    html = data.get("html") or {}
    banner = unescape(re.sub(r"<[^>]+>", "", str(html.get("announcement") or ""))).strip()  # HTML -> text
    banner = re.sub(rf"^{re.escape(profile)} profile:\s*", "", banner)  # the section's heading names the profile
    return Book(profile=profile, title=str(data.get("title", profile)), summary=profile_summary(profile),
                results=banner, provenance=str(html.get("extra_footer") or ""),
                repository=str((data.get("repository") or {}).get("url") or ""))


def landing_page(books: Sequence[Book]) -> str:
    """The site's ``index.html``: one section per book, linked relative to the page (any Pages sub-path works)."""
    repository = next((b.repository for b in books if b.repository), "")
    sections = []
    for book in books:
        results = f"<p class='results'>{escape(book.results)}</p>" if book.results else ""
        sections.append(
            f"<section id='{escape(book.profile)}'>\n<h2><a href='{escape(book.profile)}/index.html'>"
            f"{escape(book.profile)} profile</a></h2>\n<p>The profile: {escape(book.summary)}</p>\n{results}\n"
            f"<p class='provenance'>{book.provenance}</p>\n</section>")
    link = (f"<p>Code, notebooks, archive and report sources: <a href='{escape(repository)}'>{escape(repository)}</a>"
            f"</p>") if repository else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(TITLE)}</title>
<meta name="description" content="LoRA fine-tuning for AG News topic classification under one million trainable
parameters: the executed notebooks and findings of each profile.">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }}
section {{ border-top: 1px solid #ccc; padding-top: .5rem; }}
.results {{ font-weight: 600; }}
.provenance {{ color: #555; font-size: .9rem; }}
</style>
</head>
<body>
<h1>{escape(TITLE)}</h1>
<p>One book per profile: each holds the executed notebooks of its results and the same guide. The profiles differ
in encoder, data and size; every book says on every page what its numbers are.</p>
{link}
{chr(10).join(sections)}
</body>
</html>
"""


def build_site(profiles: Sequence[str]) -> Path:
    """``build/site``: each profile's book in ``<profile>/`` and the landing page; returns the page's path."""
    profiles = list(profiles)
    if not profiles or len(set(profiles)) != len(profiles):
        raise ConfigError(f"the site needs each profile once (got {' '.join(profiles) or 'none'}); e.g. "
                          f"python -m lora_agnews site cpu base demo.")
    books = [read_book(p) for p in profiles]  # every book checked before the old site is removed
    out = paths.site_dir()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for book in books:
        shutil.copytree(paths.book_html_dir(book.profile), out / book.profile)
    (out / ".nojekyll").write_text("", encoding="utf-8")  # served as is (folders such as _static included)
    index = out / "index.html"
    index.write_text(landing_page(books), encoding="utf-8")
    return index
