"""Figures (created, titled, saved as PNG + PDF) and reporting (macros, tables, generated text). Fast."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from conftest import read_macros  # noqa: E402

from lora_agnews.reporting import ablation_reporting, book_pages, plots, text as reporting
from lora_agnews.core import config, paths
from lora_agnews.studies import experiments
from lora_agnews.core.tasks.agnews import LABELS  # noqa: E402
from lora_agnews.core.evaluate import compute_metrics  # noqa: E402


@pytest.fixture
def metrics() -> dict:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 4, size=200))
    probs = np.full((200, 4), 0.05)
    probs[np.arange(200), y_pred] = 0.85
    return compute_metrics(y_true, y_pred, probs, names=LABELS)


@pytest.fixture
def ablation() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["r2-a-default", "r8-a-default", "r2-b-linear", "r64-b-default"],
        "lora_r": [2, 8, 2, 64], "lora_targets": ["query,value", "query,value", "query,key,value,dense", "query,key,value"],
        "head": ["default", "default", "linear", "default"], "trainable_params": [20_000, 40_000, 15_000, 2_000_000],
        "within_budget": [True, True, True, False], "accuracy": [0.80, 0.86, 0.82, math.nan],
        "macro_f1": [0.79, 0.85, 0.81, math.nan], "best_validation_accuracy": [0.81, 0.87, 0.83, None],
        "train_seconds": [1.0, 2.0, 1.0, None], "run_dir": ["a", "b", "c", "d"],
    })


@pytest.fixture
def stats() -> dict:
    def entry(name: str, accs: list[float]) -> dict:
        return {"name": name, "config": {"lora_targets": "query,key,value", "lora_r": 8, "head": "linear"},
                "trainable_params": 30_000, "seeds": [42, 43], "accuracy": accs, "macro_f1": accs,
                "mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)),
                "bootstrap_ci": [min(accs) - 0.01, max(accs) + 0.01], "pooled_accuracy": float(np.mean(accs))}

    chosen, baseline = entry("chosen-r8-q+k+v-linear", [0.91, 0.93]), entry("baseline-r7", [0.88, 0.89])
    mcnemar = {"b": 12, "c": 3, "statistic": 3.0, "p_value": 0.035, "seed": 42, "method": "exact binomial"}
    difference = {"mean": 0.035, "bootstrap_ci": [0.01, 0.06]}
    settings = [dict(chosen, role="chosen", vs_baseline={**difference, "mcnemar_per_seed": [mcnemar]}),
                dict(baseline, role="baseline")]
    return {"chosen": chosen, "baseline": baseline, "settings": settings, "mcnemar": mcnemar,
            "difference": difference, "n_eval": 160, "confidence": 0.95}


def _history() -> list[dict]:
    out = [{"loss": 1.4 - 0.1 * i, "step": 5 * i + 1, "epoch": i / 4} for i in range(8)]
    out += [{"eval_loss": 1.0 - 0.1 * i, "eval_accuracy": 0.6 + 0.1 * i, "step": 10 * (i + 1)} for i in range(3)]
    return out


def _check_saved(fig, tmp_path: Path, name: str) -> None:
    out = paths.save_figure(fig, tmp_path, name)
    plots.close(fig)
    assert out["png"].stat().st_size > 2000 and out["png"].read_bytes()[:4] == b"\x89PNG"
    assert out["pdf"].stat().st_size > 1000 and out["pdf"].read_bytes()[:4] == b"%PDF"


def _titles(fig) -> str:
    return " ".join([ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""])


# --------------------------------------------------------------------------- plots
def test_confusion_matrices_show_counts_classes_and_labels(metrics: dict, tmp_path: Path) -> None:
    fig = plots.confusion_matrices(metrics["confusion_matrix"], metrics["labels"])
    left, right = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in left.get_xticklabels()] == list(LABELS)
    assert left.get_xlabel() == "Predicted class" and left.get_ylabel() == "True class"
    counts = {int(t.get_text().replace(",", "")) for t in left.texts}
    assert counts == {int(v) for row in metrics["confusion_matrix"] for v in row}
    assert "Row-normalised" in right.get_title() and "200" in _titles(fig)
    _check_saved(fig, tmp_path, "confusion_matrix")


def test_reliability_and_training_curves(metrics: dict, tmp_path: Path) -> None:
    fig = plots.reliability_diagram(metrics["calibration"])
    assert "ECE" in _titles(fig)
    _check_saved(fig, tmp_path, "reliability")
    fig = plots.training_curves(_history())
    assert fig.axes[1].get_ylabel() == "Accuracy (%)" and "Training curves" in _titles(fig)
    _check_saved(fig, tmp_path, "curves")
    with pytest.raises(ValueError, match="no loss"):
        plots.training_curves([{"epoch": 1}])


def test_accuracy_vs_params_marks_budget_pareto_and_refused(ablation: pd.DataFrame, tmp_path: Path) -> None:
    fig = plots.accuracy_vs_params(ablation, budget=1_000_000, pareto=experiments.grid_front(ablation))
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "budget 1,000,000" in labels and "Pareto front (one seed each)" in labels
    assert any(label.startswith("over budget, not trained (1)") for label in labels)
    assert ax.get_xlim()[1] > 2_000_000 and "trainable parameters" in ax.get_xlabel().lower()
    front = next(line for line in ax.get_lines() if line.get_label() == "Pareto front (one seed each)")
    assert front.get_drawstyle() == "steps-post", "the front is a staircase, not a line between points"
    ys = list(front.get_ydata())
    assert ys == sorted(ys) and front.get_xdata()[-1] >= 1_000_000  # held up to the budget
    _check_saved(fig, tmp_path, "pareto")


def test_data_and_budget_figures(tmp_path: Path, stats: dict) -> None:
    balance = pd.DataFrame({"train": [10, 12, 9, 11], "validation": [2, 2, 1, 2], "test": [5, 5, 5, 5]},
                           index=pd.Index(LABELS, name="class"))
    fig = plots.class_balance(balance)
    assert fig.axes[0].get_title() == "Class balance per split"
    _check_saved(fig, tmp_path, "balance")
    table = pd.DataFrame({"split": ["train"] * 3 + ["test"] * 2, "class": ["World"] * 5,
                          "words": [3, 5, 7, 4, 9], "tokens": [5, 7, 30, 6, 12]})
    fig = plots.length_distributions(table, max_length=10)
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["max_length = 10 (40.0% truncated)"]
    _check_saved(fig, tmp_path, "lengths")
    breakdown = {"total": 1_100, "lora": 600, "head": 500, "other": 0, "lora_by_target": {"query": 300, "value": 300}}
    fig = plots.parameter_breakdown(breakdown, budget=1_000)
    assert "OVER" in fig.axes[0].get_title()
    _check_saved(fig, tmp_path, "breakdown")
    fig = plots.seed_comparison(stats)
    assert "2 seeds" in fig.axes[0].get_title()
    _check_saved(fig, tmp_path, "seeds")


# --------------------------------------------------------------------------- reporting
def test_macros_are_escaped_named_and_read_back(tmp_path: Path) -> None:
    path = reporting.write_macros("unit", "training", {"model_name": "a_b & 50%", "test_accuracy": "94.37",
                                                       "f1_Sci/Tech": "90.00"})
    text = path.read_text()
    assert r"\newcommand{\ModelName}{a\_b \& 50\%}" in text
    assert r"\newcommand{\FOneSciTech}{90.00}" in text
    assert read_macros(path)["TestAccuracy"] == "94.37"
    assert path == reporting.tex_dir("unit") / "macros_training.tex"
    with pytest.raises(ValueError, match="collide"):
        reporting.write_macros("unit", "training", {"a_b": 1, "aB": 2})
    with pytest.raises(ValueError, match="unknown macros file"):
        reporting.write_macros("unit", "nonsense", {"a": 1})


def test_metrics_table_and_macros(metrics: dict) -> None:
    tabular = reporting.metrics_table(metrics, accuracy_row=True).latex()
    assert r"\begin{tabular}" in tabular and r"\toprule" in tabular
    for name in LABELS:
        assert name in tabular
    assert f"{100 * metrics['accuracy']:.2f}" in tabular
    values = reporting.evaluation_macros(metrics, agreement=1.0)
    assert values["test_accuracy"] == f"{100 * metrics['accuracy']:.2f}"
    assert values["n_eval"] == "200" and values["prediction_agreement"] == "100.00"
    true, pred, count = reporting.most_confused(metrics["confusion_matrix"], metrics["labels"])
    cm = np.asarray(metrics["confusion_matrix"])
    np.fill_diagonal(cm, -1)
    assert count == cm.max() and true in LABELS and pred in LABELS


def test_pareto_ablation_and_statistics_tables(ablation: pd.DataFrame, stats: dict) -> None:
    assert experiments.grid_front(ablation).tolist() == [False, True, True, False]
    tabular = ablation_reporting.ablation_table(ablation).latex()
    assert "Q,K,V,dense" in tabular and "2,000,000" in tabular and "86.00" in tabular and "--" in tabular
    assert tabular.count(r"\\") == 1 + len(ablation)
    shown = ablation_reporting.ablation_table(ablation, {"r2-b-linear": 3}).frame
    # a screen: ranked by validation (a variant without one, over the budget, last), one seed's test accuracy
    assert list(shown["trainable"]) == [40_000, 15_000, 20_000, 2_000_000]
    assert list(shown["rank"]) == ["1", "2", "3", "–"]
    assert list(shown[ablation_reporting.SEEDED]) == ["", "3 seeds", "", ""]
    assert not any("pick" in str(c) or "vs" in str(c) for c in shown.columns)  # no column compares settings
    table = ablation_reporting.statistics_table(stats).latex()
    assert "92.00 ± 1.41" in table and "[90.00, 94.00]" in table
    macros = ablation_reporting.ablation_macros(ablation, stats)
    assert macros["ablation_top_name"] == "r8-a-default" and macros["ablation_over_budget"] == 1
    assert macros["mcnemar_p_text"] == "= 0.035"


def test_comparison_sentence_follows_the_numbers(stats: dict) -> None:
    """The verdict is the paired interval's; McNemar's test is stated at every seed and decides nothing."""
    tests = [stats["mcnemar"], {**stats["mcnemar"], "p_value": 0.4, "seed": 43}]
    text = ablation_reporting.comparison_sentence({**stats, "mcnemar_per_seed": tests})
    assert "3.50 points higher than" in text and "excludes zero" in text and "ahead of the baseline" in text
    assert "= 0.035 (seed 42), = 0.400 (seed 43)" in text
    flipped = {**stats, "chosen": stats["baseline"], "baseline": stats["chosen"],
               "difference": {"mean": -0.035, "bootstrap_ci": [-0.06, 0.01]}}  # McNemar p 0.035 at seed 42
    text = ablation_reporting.comparison_sentence(flipped)
    assert "lower than" in text and "includes zero" in text and "not distinguishable from the baseline" in text


def test_mcnemar_is_shown_at_every_seed_with_its_seed(stats: dict, ablation: pd.DataFrame) -> None:
    tests = [{**stats["mcnemar"], "p_value": 0.5}, {**stats["mcnemar"], "p_value": 0.049, "seed": 43, "b": 20}]
    study = {**stats, "mcnemar_per_seed": tests,
             "settings": [{**stats["settings"][0], "vs_baseline": {**stats["difference"], "mcnemar_per_seed": tests}},
                          stats["settings"][1]]}
    table = ablation_reporting.statistics_table(study)
    assert table.columns[5].key == "McNemar p (seed 42 / 43)" and table.cells()[0][5] == "0.500 / 0.049"
    frame = ablation_reporting.mcnemar_frame(study)
    assert list(frame.columns) == ["seed 42", "seed 43"] and frame.loc["p-value"].tolist() == ["0.500", "0.049"]
    assert frame.loc["b: chosen right, baseline wrong", "seed 43"] == "20"
    assert ablation_reporting.ablation_macros(ablation, study)["mcnemar_per_seed"] == (
        "p = 0.500 (seed 42), = 0.049 (seed 43)")


def test_profile_note_is_honest() -> None:
    smoke = reporting.profile_note(config.load("smoke"))
    assert "smoke profile" in smoke and "not roberta-base results" in smoke
    assert "paper profile" in reporting.profile_note(config.load("paper"))


def test_markdown_table_and_strict_templates() -> None:
    table = paths.Table.of([paths.Column("a"), paths.Column("b")], [("x|y", 1)]).markdown()
    assert table.splitlines()[0] == "| a | b |" and "x\\|y" in table
    assert book_pages.render_template("{{ x | pct }}%", {"x": 0.5}) == "50.00%"
    with pytest.raises(ValueError, match="page.md"):
        book_pages.render_template("{{ missing }}", {}, "page.md")


def test_head_counts_are_exact_and_ordered() -> None:
    counts = reporting.head_counts(config.load("demo"))  # MiniLM on the meta device: exact and quick
    assert list(counts["head"]) == ["default", "linear", "lora-dense"]
    assert (counts["total"] == counts["lora"] + counts["head_params"]).all()
    assert counts.loc[1, "head_params"] == 384 * 4 + 4  # linear head: hidden x classes + bias
    macros = reporting.head_count_macros(counts, "paper")
    assert paths.macro_name("paper_total_lora-dense") == "PaperTotalLoraDense"
    assert macros["paper_head_linear"] == f"{int(counts.loc[1, 'head_params']):,}"


def test_confusion_sentence_names_the_pair_or_says_there_is_none() -> None:
    perfect = [[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 5]]
    assert "no confusions" in reporting.confusion_sentence(perfect, LABELS)
    mixed = [[5, 0, 2, 0], [0, 5, 0, 0], [1, 0, 5, 0], [0, 0, 0, 5]]
    text = reporting.confusion_sentence(mixed, LABELS)
    assert "World predicted as Business (2 examples of 3 errors)" in text


# --------------------------------------------------------------------------- methods and the seed study
def test_settings_are_described_by_method_size_placement_and_head() -> None:
    base = {"lora_r": 18, "lora_targets": "query,key,value", "head": "linear", "prompt_tokens": 20}
    assert reporting.describe_setting(base) == "r=18, Q,K,V, linear head"  # LoRA reads as before
    assert reporting.describe_setting({**base, "method": "pissa"}) == "PiSSA r=18, Q,K,V, linear head"
    assert reporting.describe_setting({**base, "lora_variant": "dora"}) == "DoRA r=18, Q,K,V, linear head"
    assert reporting.describe_setting({**base, "method": "ia3"}) == "(IA)³, Q,K,V, linear head"
    assert reporting.describe_setting({**base, "method": "bitfit"}) == "BitFit, linear head"
    assert reporting.describe_setting({**base, "method": "prompt"}) == "prompt tuning 20 tokens, linear head"


@pytest.fixture
def method_grid(ablation: pd.DataFrame) -> pd.DataFrame:
    frame = ablation.iloc[:3].copy()
    frame["method"] = ["lora", "ia3", "bitfit"]
    frame["size_key"] = ["lora_r", None, None]
    frame["prompt_tokens"] = 20
    return frame


def test_ablation_table_and_plot_tell_methods_apart(method_grid: pd.DataFrame, ablation: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    shown = ablation_reporting.ablation_table(method_grid)
    header, rows = [c.key for c in shown.columns], shown.cells()
    # one cell names the setting; one target set among the methods that have targets: no targets column
    assert header[:4] == ["rank", "setting", "head", "trainable"]
    assert {r[1] for r in rows} == {"LoRA r=2", "(IA)³", "BitFit"}
    assert list(ablation_reporting.ablation_table(ablation).frame)[1:4] == ["r", "targets", "head"]  # LoRA-only: plain r
    tabular = shown.latex()
    assert "Setting" in tabular and tabular.count(r"\\") == 1 + len(method_grid)
    sentence = ablation_reporting.ablation_sentence(method_grid)
    assert "BitFit, linear head" in sentence and "LoRA r=2, " in sentence  # beside other methods LoRA is named
    fig = plots.accuracy_vs_params(method_grid, budget=1_000_000)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert {"LoRA", "(IA)³", "BitFit"} <= set(labels)  # colour is the method
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["r=2"]  # only the rank-sized point is labelled with a rank
    panel = next(a for a in fig.axes if a.get_title().startswith("Each trained variant"))
    assert any(t.get_text().startswith("LoRA r=2") for t in panel.get_yticklabels())
    _check_saved(fig, tmp_path, "methods")


def test_seed_study_with_grid_variants_against_the_baseline(stats: dict, tmp_path: Path) -> None:
    def versus(mean: float, lo: float, hi: float, p: float) -> dict:
        return {"mean": mean, "bootstrap_ci": [lo, hi], "mcnemar_per_seed": [{"b": 5, "c": 1, "p_value": p, "seed": 42}]}

    grid = {**stats["chosen"], "name": "grid-ia3", "config": {**stats["chosen"]["config"], "method": "ia3"},
            "mean": 0.875, "std": 0.005, "role": "grid 1", "vs_baseline": versus(-0.01, -0.03, 0.01, 0.5),
            "train_seconds": [100.0, 120.0]}
    settings = [{**stats["chosen"], "role": "chosen", "vs_baseline": versus(0.035, 0.01, 0.06, 0.035),
                 "train_seconds": [300.0, None]},
                {**stats["baseline"], "role": "baseline", "vs_baseline": versus(0.0, 0.0, 0.0, 1.0)}, grid]
    study = {**stats, "settings": settings}
    table = ablation_reporting.statistics_table(study)
    header, rows = [c.key for c in table.columns], table.cells()
    assert [r[0] for r in rows] == ["chosen", "baseline", "grid 1"]
    assert rows[0][4] == "+3.50 [+1.00, +6.00]" and rows[0][5] == "0.035" and rows[0][6] == "300"
    assert header[5] == "McNemar p (seed 42)"  # the seed its p-value is of, named
    assert rows[1][4] == "--" and rows[2][1] == "(IA)³, Q,K,V, linear head" and rows[2][6] == "110"
    assert "over 2 seeds" in header[3] and rows[0][3].startswith("92.00 ± 1.41 [")
    text = ablation_reporting.study_sentence(study)  # 2 seeds: fewer than a verdict needs
    assert "chosen (r=8, Q,K,V, linear head" in text and "ahead" not in text.split(". A setting")[0]
    assert "no verdict (2 seed(s)" in text
    three = {**study, "settings": [{**s, "seeds": [42, 43, 44]} for s in settings]}
    text = ablation_reporting.study_sentence(three)
    assert "chosen (r=8, Q,K,V, linear head" in text and "ahead of the baseline" in text
    assert "grid 1 ((IA)³" in text and "not distinguishable from the baseline" in text
    assert ablation_reporting.study_sentence(stats) == ablation_reporting.comparison_sentence(stats)  # two settings: one comparison
    assert "Configuration" in table.latex()
    fig = plots.seed_comparison(study)
    assert len(fig.axes[0].get_yticks()) == 3 and "Settings of the seed study" in fig.axes[0].get_title()
    _check_saved(fig, tmp_path, "study")
