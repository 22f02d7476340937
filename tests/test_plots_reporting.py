"""Figures (created, titled, saved as PNG + PDF) and reporting (macros, tables, generated text). Fast."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lora_agnews import artifacts, config, plots, reporting  # noqa: E402
from lora_agnews.data import LABELS  # noqa: E402
from lora_agnews.evaluate import compute_metrics  # noqa: E402


@pytest.fixture
def metrics() -> dict:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 4, size=200))
    probs = np.full((200, 4), 0.05)
    probs[np.arange(200), y_pred] = 0.85
    return compute_metrics(y_true, y_pred, probs)


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

    return {"chosen": entry("chosen-r8-q+k+v-linear", [0.91, 0.93]), "baseline": entry("baseline-r7", [0.88, 0.89]),
            "mcnemar": {"b": 12, "c": 3, "statistic": 3.0, "p_value": 0.035, "seed": 42, "method": "exact binomial"},
            "difference": {"mean": 0.035, "bootstrap_ci": [0.01, 0.06]}, "n_eval": 160, "confidence": 0.95}


def _history() -> list[dict]:
    out = [{"loss": 1.4 - 0.1 * i, "step": 5 * i + 1, "epoch": i / 4} for i in range(8)]
    out += [{"eval_loss": 1.0 - 0.1 * i, "eval_accuracy": 0.6 + 0.1 * i, "step": 10 * (i + 1)} for i in range(3)]
    return out


def _check_saved(fig, tmp_path: Path, name: str) -> None:
    out = artifacts.save_figure(fig, tmp_path, name)
    plots.close(fig)
    assert out["png"].stat().st_size > 2000 and out["png"].read_bytes()[:4] == b"\x89PNG"
    assert out["pdf"].stat().st_size > 1000 and out["pdf"].read_bytes()[:4] == b"%PDF"


def _titles(fig) -> str:
    return " ".join([ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""])


# --------------------------------------------------------------------------- plots
def test_confusion_matrices_show_counts_classes_and_labels(metrics: dict, tmp_path: Path) -> None:
    fig = plots.confusion_matrices(metrics["confusion_matrix"])
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
    fig = plots.accuracy_vs_params(ablation, budget=1_000_000, pareto=reporting.pareto_mask(ablation))
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "budget 1,000,000" in labels and "Pareto front" in labels
    assert any(label.startswith("over budget, not trained (1)") for label in labels)
    assert ax.get_xlim()[1] > 2_000_000 and "trainable parameters" in ax.get_xlabel().lower()
    front = next(line for line in ax.get_lines() if line.get_label() == "Pareto front")
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
    assert reporting.read_macros(path)["TestAccuracy"] == "94.37"
    assert path == reporting.tex_dir("unit") / "macros_training.tex"
    with pytest.raises(ValueError, match="collide"):
        reporting.write_macros("unit", "training", {"a_b": 1, "aB": 2})
    with pytest.raises(ValueError, match="unknown macros file"):
        reporting.write_macros("unit", "nonsense", {"a": 1})


def test_metrics_table_and_macros(metrics: dict) -> None:
    tabular = reporting.metrics_tabular(metrics)
    assert r"\begin{tabular}" in tabular and r"\toprule" in tabular
    for name in LABELS:
        assert name in tabular
    assert f"{100 * metrics['accuracy']:.2f}" in tabular
    values = reporting.evaluation_macros(metrics, agreement=1.0)
    assert values["test_accuracy"] == f"{100 * metrics['accuracy']:.2f}"
    assert values["n_eval"] == "200" and values["prediction_agreement"] == "100.00"
    true, pred, count = reporting.most_confused(metrics["confusion_matrix"])
    cm = np.asarray(metrics["confusion_matrix"])
    np.fill_diagonal(cm, -1)
    assert count == cm.max() and true in LABELS and pred in LABELS


def test_pareto_ablation_and_statistics_tables(ablation: pd.DataFrame, stats: dict) -> None:
    assert reporting.pareto_mask(ablation) == [False, True, True, False]
    tabular = reporting.ablation_tabular(ablation)
    assert "Q,K,V,dense" in tabular and "2,000,000" in tabular and "86.00" in tabular and "--" in tabular
    assert tabular.count(r"\\") == 1 + len(ablation)
    shown = reporting.ablation_frame(ablation)
    assert list(shown["trainable"]) == sorted(ablation["trainable_params"])
    table = reporting.statistics_tabular(stats)
    assert "92.00 ± 1.41" in table and "[90.00, 94.00]" in table
    macros = reporting.ablation_macros(ablation, stats)
    assert macros["ablation_best_name"] == "r8-a-default" and macros["ablation_over_budget"] == 1
    assert macros["mcnemar_p_text"] == "= 0.035"


def test_comparison_sentence_follows_the_numbers(stats: dict) -> None:
    text = reporting.comparison_sentence(stats)
    assert "3.50 points higher than" in text and "significant at the 5% level" in text and "excludes zero" in text
    flipped = {**stats, "chosen": stats["baseline"], "baseline": stats["chosen"],
               "mcnemar": {**stats["mcnemar"], "p_value": 0.4}, "difference": {"mean": -0.035, "bootstrap_ci": [-0.06, 0.01]}}
    text = reporting.comparison_sentence(flipped)
    assert "lower than" in text and "not significant" in text and "includes zero" in text


def test_profile_note_is_honest() -> None:
    smoke = reporting.profile_note(config.load("smoke"))
    assert "smoke profile" in smoke and "not roberta-base results" in smoke
    assert "paper profile" in reporting.profile_note(config.load("paper"))


def test_markdown_table_and_strict_templates() -> None:
    table = reporting.markdown_table(["a", "b"], [("x|y", 1)])
    assert table.splitlines()[0] == "| a | b |" and "x\\|y" in table
    assert reporting.render_template("{{ x | pct }}%", {"x": 0.5}) == "50.00%"
    with pytest.raises(ValueError, match="page.md"):
        reporting.render_template("{{ missing }}", {}, "page.md")


def test_head_counts_are_exact_and_ordered() -> None:
    counts = reporting.head_counts(config.load("demo"))  # MiniLM on the meta device: exact and quick
    assert list(counts["head"]) == ["default", "linear", "lora-dense"]
    assert (counts["total"] == counts["lora"] + counts["head_params"]).all()
    assert counts.loc[1, "head_params"] == 384 * 4 + 4  # linear head: hidden x classes + bias
    macros = reporting.head_count_macros(counts, "paper")
    assert artifacts.macro_name("paper_total_lora-dense") == "PaperTotalLoraDense"
    assert macros["paper_head_linear"] == f"{int(counts.loc[1, 'head_params']):,}"


def test_confusion_sentence_names_the_pair_or_says_there_is_none() -> None:
    perfect = [[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 5]]
    assert "no confusions" in reporting.confusion_sentence(perfect)
    mixed = [[5, 0, 2, 0], [0, 5, 0, 0], [1, 0, 5, 0], [0, 0, 0, 5]]
    text = reporting.confusion_sentence(mixed)
    assert "World predicted as Business (2 examples of 3 errors)" in text
