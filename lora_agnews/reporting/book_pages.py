"""The book's generated pages: every result file of a profile, gathered into one template context.

The Markdown pages under ``book/`` are Jinja templates rendered at build time from the notebooks' JSON,
so the book never holds a typed number; a missing file names the notebook that writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..core import paths
from .ablation_reporting import (ablation_sentence, ablation_table, comparison_sentence, rate_sentence, rates_table,
                                 seed_study_names, seeded_sentence, statistics_table, study_sentence)
from .text import (PAPER_PROFILE, banner_note, provenance_sentence, changed_parameters, confusion_sentence, describe_data,
                        describe_encoder, gap_sentence, gap_table, metrics_table, profile_note, reference_sentence,
                        row_sentence, short_targets, shows_banner)
from ..core.paths import dec, num, p_text, pct, pvalue

# Each result file the book reads, and the notebook that writes it (named when the file is missing).
WRITERS = {"exploration": "01_exploration", "training": "02_training", "metrics": "03_evaluation",
           "reference": "03_evaluation", "multilabel": "03_evaluation", "ablation": "04_ablations", "learning_rates": "04_ablations",
           "statistics": "04_ablations", "merging": "05_merging", "quantization": "06_quantization"}
# The book's pages rendered from the results; the guide's pages are copied as they are.
PAGES = ("intro.md", "results.md")


def load_results(profile: str) -> dict[str, Any]:
    """The notebooks' JSON results of a profile; a missing file names the notebook that writes it."""
    out = {}
    for name, notebook in WRITERS.items():
        path = paths.results_dir(profile) / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (written by notebook {notebook}); run "
                                    f"`make notebooks PROFILE={profile}`.")
        out[name] = paths.read_json(path)
    return out


def book_context(profile: str, stamp: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the book's Markdown templates may use: results, formatted tables, profile facts."""
    from . import merge_reporting
    from ..studies import multilabel_study, quantize_study, yardsticks
    from ..studies.audit import read_audit
    from .audit_text import summary
    from ..core.config import from_dict

    results = load_results(profile)
    merging = pd.DataFrame(results["merging"]["rows"])
    cfg = from_dict(results["training"]["config"])
    facts = results["training"]["facts"]
    ablation = pd.DataFrame(results["ablation"])
    stats = results["statistics"]
    metrics = results["metrics"]
    gaps = yardsticks.large_gaps(paths.runs_dir(profile))
    return {
        "profile": profile, "is_paper": profile == PAPER_PROFILE, "model_name": cfg.model_name, "cfg": cfg.to_dict(),
        "profile_note": profile_note(cfg, facts), "banner": shows_banner(cfg, facts), "facts": facts,
        "banner_note": banner_note(cfg, facts),
        "rows_sentence": row_sentence(facts), "encoder_description": describe_encoder(cfg, facts),
        "data_description": describe_data(cfg.data, cfg.task),
        "stamp": dict(stamp), "overrides": {k: v for k, (_, v) in changed_parameters(cfg).items()},
        "changed": {k: list(v) for k, v in changed_parameters(cfg).items()},
        **results,
        "confusion_sentence": confusion_sentence(metrics["confusion_matrix"], metrics["labels"]),
        "comparison_sentence": comparison_sentence(stats), "ablation_sentence": ablation_sentence(ablation),
        "rates_sentence": rate_sentence(results["learning_rates"]),
        "audit": read_audit(profile), "audit_sentence": summary(read_audit(profile)),
        "provenance_sentence": provenance_sentence(stamp.get("archive")),
        "study_sentence": study_sentence(stats),
        "reference_sentence": reference_sentence(results["reference"]),
        "gaps": gaps, "gap_sentence": gap_sentence(gaps),
        "merging_sentence": merge_reporting.sentence(merging, results["merging"]["settings"].get("steps")),
        "quantization_sentence": quantize_study.sentence(results["quantization"]),
        "multilabel_sentence": multilabel_study.sentence(results["multilabel"]),
        "multilabel_data_sentence": multilabel_study.cooccurrence_sentence(results["multilabel"]["data"]),
        "multilabel_note": multilabel_study.note(results["multilabel"]),
        "seeded_sentence": seeded_sentence(stats, results["quantization"]),
        "tables": {name: table.markdown() for name, table in (
            ("metrics", metrics_table(metrics)), ("ablation", ablation_table(ablation, seed_study_names(stats))), ("gaps", gap_table(gaps)),
            ("rates", rates_table(results["learning_rates"])), ("statistics", statistics_table(stats)),
            ("merging", merge_reporting.summary_table(merging)),
            ("quantization", quantize_study.table(results["quantization"])),
            ("multilabel", multilabel_study.scores_table(results["multilabel"])),
            ("multilabel_labels", multilabel_study.per_label_table(results["multilabel"])))},
    }


def render_pages(src: Path, context: Mapping[str, Any]) -> None:
    """Render each of :data:`PAGES` in the assembled book source ``src`` in place."""
    for name in PAGES:
        page = src / name
        page.write_text(render_template(page.read_text(encoding="utf-8"), context, name), encoding="utf-8")


def render_template(text: str, context: Mapping[str, Any], name: str = "page") -> str:
    """Render a book page (Jinja2, strict: an unknown name is an error, never an empty string)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(pct=pct, num=num, dec=dec, pvalue=pvalue, p_text=p_text, short_targets=short_targets)
    try:
        return env.from_string(text).render(**context)
    except jinja2.TemplateError as exc:
        raise ValueError(f"book page {name}: {type(exc).__name__}: {exc}") from None
