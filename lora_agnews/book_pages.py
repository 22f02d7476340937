"""The book's generated pages: every result file of a profile, gathered into one template context.

The Markdown pages under ``book/`` are Jinja templates rendered at build time from the notebooks' JSON,
so the book never holds a typed number; a missing file names the notebook that writes it.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from . import artifacts, paths
from .ablation_reporting import (ablation_rows, ablation_sentence, best_ablation, comparison_sentence, rate_rows,
                                 rate_sentence, statistics_rows, study_sentence)
from .artifacts import num, pct, pvalue
from .reporting import (PAPER_PROFILE, banner_note, changed_parameters, confusion_sentence, dec, describe_data,
                        describe_encoder, markdown_table, metrics_frame, p_text, profile_note, reference_sentence,
                        row_sentence, run_facts, short_targets, shows_banner)


RESULT_FILES = ("exploration", "training", "metrics", "reference", "ablation", "statistics", "merging", "quantization")


def load_results(profile: str) -> dict[str, Any]:
    """The notebooks' JSON results of a profile; a missing file names the notebook that writes it."""
    writers = {"exploration": "01_exploration", "training": "02_training", "metrics": "03_evaluation",
               "reference": "03_evaluation",
               "ablation": "04_ablations", "statistics": "04_ablations", "merging": "05_merging",
               "quantization": "06_quantization"}
    out = {}
    for name in RESULT_FILES:
        path = paths.results_dir(profile) / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (written by notebook {writers[name]}); run "
                                    f"`make notebooks PROFILE={profile}`.")
        out[name] = artifacts.read_json(path)
    rates = paths.results_dir(profile) / "learning_rates.json"  # optional: written by 04 since RESULTS_FORMAT 5
    out["learning_rates"] = artifacts.read_json(rates) if rates.is_file() else []
    return out


def book_context(profile: str, stamp: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the book's Markdown templates may use: results, formatted tables, profile facts."""
    from . import merge_reporting, quantize_study
    from .audit import read_audit, summary
    from .config import from_dict

    results = load_results(profile)
    merging = pd.DataFrame(results["merging"]["rows"])
    cfg = from_dict(results["training"]["config"])
    facts = results["training"].get("facts") or run_facts({}, cfg)
    ablation = pd.DataFrame(results["ablation"])
    stats = results["statistics"]
    metrics = results["metrics"]
    ablation_header, ablation_table_rows = ablation_rows(ablation)
    metric_rows = [(name, f"{r.precision:.2f}", f"{r.recall:.2f}", f"{r.f1:.2f}", num(r.support))
                   for name, r in metrics_frame(metrics).iterrows()]
    stat_header, stat_rows = statistics_rows(stats)
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
        "study_sentence": study_sentence(stats),
        "reference_sentence": reference_sentence(results["reference"]),
        "merging_sentence": merge_reporting.sentence(merging),
        "quantization_sentence": quantize_study.sentence(results["quantization"]),
        "best_ablation": (best_ablation(ablation).to_dict() if best_ablation(ablation) is not None else None),
        "tables": {
            "metrics": markdown_table(["class", "precision (%)", "recall (%)", "F1 (%)", "support"], metric_rows),
            "ablation": markdown_table(ablation_header, ablation_table_rows),
            "rates": markdown_table(*rate_rows(results["learning_rates"])),
            "statistics": markdown_table(stat_header, stat_rows),
            "merging": _markdown_frame(merge_reporting.summary_table(merging)),
            "quantization": _markdown_frame(quantize_study.table(results["quantization"])),
        },
    }


def _markdown_frame(frame: pd.DataFrame) -> str:
    return markdown_table(list(frame.columns), frame.astype(str).itertuples(index=False, name=None))


def render_template(text: str, context: Mapping[str, Any], name: str = "page") -> str:
    """Render a book page (Jinja2, strict: an unknown name is an error, never an empty string)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(pct=pct, num=num, dec=dec, pvalue=pvalue, p_text=p_text, short_targets=short_targets)
    try:
        return env.from_string(text).render(**context)
    except jinja2.TemplateError as exc:
        raise ValueError(f"book page {name}: {type(exc).__name__}: {exc}") from None
