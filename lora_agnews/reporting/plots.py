"""Figures for the notebooks, the book and the report (seaborn/matplotlib).

Every function takes data and returns a matplotlib Figure; nothing is saved here, so one
figure goes through :func:`lora_agnews.core.paths.save_figure` once and lands as PNG (book)
and PDF (report). Titles, axis labels and class names are always set: a figure is read
without its notebook around it, in the report.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .merge_reporting import label as merge_label
from ..studies.comparison import CONFIDENCE
from ..studies.merging import HEAD_ONLY, OWN
from .ablation_reporting import describe_config
from ..studies.experiments import by_validation, grid_settings
from .text import describe_setting, method_label, several_methods

PALETTE = "colorblind"
SPLIT_ORDER = ["train", "validation", "test"]


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """One look for every figure: white grid, readable font sizes, no top/right spines."""
    rc = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11, "ytick.labelsize": 11,
          "legend.fontsize": 10, "figure.titlesize": 14, "axes.spines.top": False, "axes.spines.right": False,
          "pdf.fonttype": 42, "figure.dpi": 100}
    with sns.axes_style("whitegrid"), plt.rc_context(rc):
        yield
        interactive = matplotlib.is_interactive()
    # The notebook backend switches interactive mode on when the first figure resolves it; leaving
    # rc_context would switch it off again and later figures would no longer be shown inline.
    matplotlib.interactive(interactive)


def _figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (6.4, 4.0), **kwargs: Any) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(nrows, ncols, figsize=size, layout="constrained", **kwargs)
    return fig, axes


def _thousands(ax: Any, axis: str = "y") -> None:
    fmt = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


# --------------------------------------------------------------------------- data (01)
def class_balance(balance: pd.DataFrame) -> Figure:
    """Grouped bars: examples per class in each split (from :func:`explore.class_balance`)."""
    splits = [s for s in SPLIT_ORDER if s in balance.columns]
    long = balance[splits].reset_index().melt(id_vars="class", var_name="split", value_name="examples")
    with _style():
        fig, ax = _figure(size=(6.4, 3.6))
        sns.barplot(data=long, x="class", y="examples", hue="split", hue_order=splits, order=list(balance.index),
                    palette=PALETTE, ax=ax)
        for container in ax.containers:
            ax.bar_label(container, fmt="{:,.0f}", fontsize=9.5, padding=1)
        ax.set(title="Class balance per split", xlabel="Class", ylabel="Examples")
        _thousands(ax)
        ax.legend(title="Split", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def length_distributions(table: pd.DataFrame, max_length: int) -> Figure:
    """Histograms of words and tokens per example by split, with the ``max_length`` cut marked."""
    splits = [s for s in SPLIT_ORDER if s in set(table["split"])]
    with _style():
        fig, axes = _figure(ncols=2, size=(10, 3.8))
        for ax, column, unit in ((axes[0], "words", "Words"), (axes[1], "tokens", "Tokens")):
            sns.histplot(data=table, x=column, hue="split", hue_order=splits, stat="density", common_norm=False,
                         element="step", fill=False, bins=40, palette=PALETTE, ax=ax)
            ax.set(title=f"{unit} per example", xlabel=f"{unit} per example (untruncated)", ylabel="Density")
        cut = axes[1].axvline(max_length, color="black", linestyle="--", linewidth=1.2)
        share = float((table["tokens"] > max_length).mean())
        axes[1].legend([cut], [f"max_length = {max_length} ({100 * share:.1f}% truncated)"], loc="upper right")
        sns.move_legend(axes[0], "upper right", title="Split")
        fig.suptitle("Text length: words and tokenizer tokens")
    return fig


# --------------------------------------------------------------------------- training (02)
def _breakdown_rows(breakdown: Mapping[str, Any]) -> list[tuple[str, int]]:
    rows = [(f"LoRA: {target}", int(n)) for target, n in breakdown.get("lora_by_target", {}).items()]
    rows.append(("classification head", int(breakdown.get("head", 0))))
    if breakdown.get("other"):
        rows.append(("other trainable", int(breakdown["other"])))
    return rows


def parameter_breakdown(breakdown: Mapping[str, Any], budget: int) -> Figure:
    """Trainable parameters by group, and the total against the budget (dashed line)."""
    rows = _breakdown_rows(breakdown)
    total = int(breakdown["total"])
    names = [n for n, _ in rows] + ["total trainable"]
    values = [v for _, v in rows] + [total]
    colors = sns.color_palette(PALETTE, 3)
    bar_colors = [colors[0] if n.startswith("LoRA") else colors[1] for n, _ in rows]
    bar_colors.append(colors[2] if total <= budget else "firebrick")
    with _style():
        fig, ax = _figure(size=(7.2, 0.45 * len(names) + 1.6))
        ax.barh(names, values, color=bar_colors)
        ax.invert_yaxis()
        limit = ax.axvline(budget, color="black", linestyle="--", linewidth=1.2)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,}", va="center", fontsize=10)
        ax.set_xlim(0, max(budget, max(values)) * 1.22)
        _thousands(ax, "x")
        verdict = "within" if total <= budget else "OVER"
        ax.set(title=f"Trainable parameters: {total:,} ({100 * total / budget:.1f}% of the budget, {verdict})",
               xlabel="Trainable parameters (head included)", ylabel="")
        ax.legend([limit], [f"budget {budget:,}"], loc="lower right")
    return fig


def _history_frames(history: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.DataFrame([h for h in history if "loss" in h and "step" in h])
    evals = pd.DataFrame([h for h in history if "eval_loss" in h and "step" in h])
    return train, evals


def training_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """Training and validation loss, and validation accuracy, against the optimizer step."""
    train, evals = _history_frames(history)
    if train.empty and evals.empty:
        raise ValueError("the training history holds no loss entries; was the run trained with logging on?")
    colors = sns.color_palette(PALETTE, 3)
    with _style():
        fig, (ax_loss, ax_acc) = _figure(ncols=2, size=(10, 3.8))
        if not train.empty:
            ax_loss.plot(train["step"], train["loss"], color=colors[0], label="training loss", alpha=0.9)
        if not evals.empty:
            ax_loss.plot(evals["step"], evals["eval_loss"], "o-", color=colors[1], label="validation loss")
        ax_loss.set(title="Loss", xlabel="Optimizer step", ylabel="Cross-entropy loss")
        ax_loss.legend()
        if not evals.empty and "eval_accuracy" in evals:
            acc = 100 * evals["eval_accuracy"]
            ax_acc.plot(evals["step"], acc, "o-", color=colors[2], label="validation accuracy")
            best = int(acc.to_numpy().argmax())
            ax_acc.scatter([evals["step"].iloc[best]], [acc.iloc[best]], s=140, facecolors="none",
                           edgecolors="black", linewidths=1.5, zorder=5,
                           label=f"best checkpoint ({acc.iloc[best]:.2f}%)")
            ax_acc.legend(loc="lower right")
        ax_acc.set(title="Validation accuracy", xlabel="Optimizer step", ylabel="Accuracy (%)")
        fig.suptitle("Training curves")
    return fig


# --------------------------------------------------------------------------- evaluation (03)
def confusion_matrices(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> Figure:
    """Counts and row-normalised confusion matrix side by side (rows = true class)."""
    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    with _style():
        fig, axes = _figure(ncols=2, size=(11, 4.4))
        sns.heatmap(cm.astype(int), annot=True, fmt=",d", cmap="Blues", cbar=False, square=True,
                    xticklabels=labels, yticklabels=labels, ax=axes[0], annot_kws={"fontsize": 10})
        sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, square=True,
                    xticklabels=labels, yticklabels=labels, ax=axes[1], annot_kws={"fontsize": 10},
                    cbar_kws={"label": "Share of the true class", "shrink": 0.8})
        for ax, title in ((axes[0], "Counts"), (axes[1], "Row-normalised (recall on the diagonal)")):
            ax.set(title=title, xlabel="Predicted class", ylabel="True class")
            ax.tick_params(axis="y", rotation=0)
        fig.suptitle(f"Confusion matrix on the test split ({int(cm.sum()):,} examples)")
    return fig


def reliability_diagram(calibration: Mapping[str, Any]) -> Figure:
    """Accuracy against confidence per bin (bars) vs perfect calibration (diagonal), with bin counts."""
    bins = [b for b in calibration["bins"]]
    centers = np.array([(b["lower"] + b["upper"]) / 2 for b in bins])
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    acc = np.array([b["accuracy"] if b["accuracy"] is not None else np.nan for b in bins], dtype=float)
    conf = np.array([b["confidence"] if b["confidence"] is not None else np.nan for b in bins], dtype=float)
    counts = np.array([b["count"] for b in bins])
    colors = sns.color_palette(PALETTE, 4)
    with _style():
        fig, (ax, ax_n) = _figure(nrows=2, size=(5.6, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.bar(centers, np.nan_to_num(acc), width=width * 0.92, color=colors[0], alpha=0.85, label="accuracy in bin")
        seen = ~np.isnan(acc)
        ax.vlines(centers[seen], np.minimum(acc, conf)[seen], np.maximum(acc, conf)[seen], color=colors[3],
                  linewidth=2, label="gap to mean confidence")
        ax.scatter(centers[seen], conf[seen], marker="_", s=width * 2500, color="black", linewidths=2, zorder=4,
                   label="mean confidence in bin")
        ax.set(title=f"Reliability diagram (ECE = {calibration['ece']:.3f})", ylabel="Accuracy", xlim=(0, 1),
               ylim=(0, 1.02))
        ax.legend(loc="upper left")
        ax_n.bar(centers, counts, width=width * 0.92, color=colors[2])
        ax_n.set(xlabel="Confidence (max softmax probability)", ylabel="Examples")
        ax_n.set_yscale("symlog", linthresh=1)
    return fig


# --------------------------------------------------------------------------- ablations (04)
def accuracy_vs_params(table: pd.DataFrame, budget: int, pareto: Sequence[bool] | None = None) -> Figure:
    """Test accuracy against trainable parameters per variant; Pareto front and budget marked.

    Variants over the budget have no accuracy (they are refused before training); they are
    drawn as grey crosses on the bottom edge so the reader sees what the budget excluded.
    """
    frame = table.reset_index(drop=True).copy()
    frame["pareto"] = list(pareto) if pareto is not None else frame.get("pareto", False)
    frame = grid_settings(frame).reset_index(drop=True)  # the runs that only picked a rate are not settings
    trained = frame[frame["accuracy"].notna()].copy()
    refused = frame[frame["accuracy"].isna()]
    trained["accuracy_pct"] = 100 * trained["accuracy"]
    trained["targets"] = trained["lora_targets"].str.replace(",", "+")
    trained["PEFT method"] = [method_label(r) for _, r in trained.iterrows()]  # "method" keeps the config's name
    several = trained["PEFT method"].nunique() > 1  # colour tells methods apart; marker shape placement and head
    if several:
        from ..core.methods import METHODS

        trained["placement"] = [f"{'whole encoder' if METHODS[m].whole_encoder else t}, {h} head"
                                for m, t, h in zip(trained["method"], trained["targets"], trained["head"])]
    hue = "PEFT method" if several else "head"
    levels = list(dict.fromkeys(trained[hue]))
    # the colourblind palette has ten colours; the whole family (eleven methods) would repeat one
    colours = dict(zip(levels, sns.color_palette(PALETTE if len(levels) <= 10 else "tab20", max(1, len(levels)))))
    timed = "train_seconds" in trained and pd.to_numeric(trained["train_seconds"], errors="coerce").notna().any()
    style = "placement" if several else "targets"
    with _style():
        if timed:  # the cost in seconds below the cost in parameters; every variant on the right
            fig = plt.figure(figsize=(12.8, max(8.4, 0.36 * len(trained) + 2.5)), layout="constrained")
            panels = fig.subplot_mosaic([["params", "each"], ["seconds", "each"]], width_ratios=[1.45, 1])
            ax, side = panels["params"], panels["each"]
        else:
            fig, (ax, side) = _figure(ncols=2, size=(12.8, 5.2), gridspec_kw={"width_ratios": [1.45, 1]})
        sns.scatterplot(data=trained, x="trainable_params", y="accuracy_pct", hue=hue, hue_order=levels,
                        style=style, s=90, palette=colours, ax=ax, zorder=3)
        if "ci_low" in trained and trained["ci_low"].notna().any():
            ok = trained[trained["ci_low"].notna()]
            ax.errorbar(ok["trainable_params"], ok["accuracy_pct"],
                        yerr=[ok["accuracy_pct"] - 100 * ok["ci_low"], 100 * ok["ci_high"] - ok["accuracy_pct"]],
                        fmt="none", ecolor="grey", elinewidth=1.0, capsize=3, zorder=1)
        front = trained[trained["pareto"].astype(bool)].sort_values("trainable_params")
        if not front.empty:
            # A staircase: each front point holds its accuracy until a point with more parameters beats it
            # (a straight line between two points would claim accuracies no variant reached).
            xs = [*front["trainable_params"], max(budget, float(front["trainable_params"].max()))]
            ys = [*front["accuracy_pct"], float(front["accuracy_pct"].iloc[-1])]
            ax.step(xs, ys, where="post", color="black", linewidth=1.2, zorder=2, label="Pareto front (one seed each)")
            ax.scatter(front["trainable_params"], front["accuracy_pct"], s=260, facecolors="none",
                       edgecolors="black", linewidths=1.3, zorder=4)
        for (params, acc), group in trained.groupby(["trainable_params", "accuracy_pct"], sort=False):
            label = _size_label(group)  # coinciding points share one label
            if label:
                ax.annotate(label, (params, acc), textcoords="offset points", xytext=(6, 5), fontsize=9.5)
        ax.axvline(budget, color="firebrick", linestyle="--", linewidth=1.3, label=f"budget {budget:,}")
        if not refused.empty:
            low = ax.get_ylim()[0]
            ax.scatter(refused["trainable_params"], [low] * len(refused), marker="x", color="grey", s=60,
                       clip_on=False, zorder=3, label=f"over budget, not trained ({len(refused)})")
        ax.set_xlim(0, max(budget, float(frame["trainable_params"].max())) * 1.08)
        _thousands(ax, "x")
        ax.set(title="Accuracy versus trainable parameters (ablation grid)",
               xlabel="Trainable parameters, head included", ylabel="Test accuracy (%)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=9)
        _variant_panel(side, trained, hue, colours)
        if timed:
            _seconds_panel(panels["seconds"], trained, hue, levels, style, colours)
    return fig


def _seconds_panel(ax: Any, trained: pd.DataFrame, hue: str, levels: Sequence[str], style: str,
                   colours: Mapping[str, Any]) -> None:
    """Accuracy against each run's training seconds: what a variant costs besides its parameters (prompt
    tokens lengthen every sequence; VeRA's shared matrices add a matmul). One run each on one machine."""
    timed = trained[pd.to_numeric(trained["train_seconds"], errors="coerce").notna()].copy()
    timed["train_seconds"] = timed["train_seconds"].astype(float)
    sns.scatterplot(data=timed, x="train_seconds", y="accuracy_pct", hue=hue, hue_order=levels, style=style,
                    s=90, palette=colours, ax=ax, zorder=3, legend=False)
    for (secs, acc), group in timed.groupby(["train_seconds", "accuracy_pct"], sort=False):
        label = _size_label(group)
        if label:
            ax.annotate(label, (secs, acc), textcoords="offset points", xytext=(6, 5), fontsize=9.5)
    ax.set_xlim(0, float(timed["train_seconds"].max()) * 1.1)
    _thousands(ax, "x")
    ax.set(title="Accuracy versus training time (one run each)", xlabel="Training seconds per run",
           ylabel="Test accuracy (%)")


def _variant_panel(ax: Any, trained: pd.DataFrame, hue: str, colours: Mapping[str, Any]) -> None:
    """Every trained variant on its own row, the best by validation accuracy at the top (the screen's ranking; the
    test accuracies are one seed's), with its interval: budget-filling variants share one parameter count and would
    hide each other on the left panel."""
    order = by_validation(trained).iloc[::-1].reset_index(drop=True)
    ys = np.arange(len(order))
    for y, (_, row) in zip(ys, order.iterrows()):
        colour = colours.get(row[hue], "grey")
        if "ci_low" in row and pd.notna(row.get("ci_low")):
            ax.errorbar(row["accuracy_pct"], y, xerr=[[row["accuracy_pct"] - 100 * row["ci_low"]],
                                                      [100 * row["ci_high"] - row["accuracy_pct"]]],
                        fmt="o", color=colour, ecolor=colour, elinewidth=2, capsize=3, markersize=7)
        else:
            ax.plot(row["accuracy_pct"], y, "o", color=colour, markersize=7)
    # two lines per label (method and size; placement and head) keep the panel's labels inside the figure
    several = several_methods(order)  # beside other methods LoRA is named
    ax.set_yticks(ys, [describe_setting(r, name_lora=several).replace(", ", "\n", 1) for _, r in order.iterrows()],
                  fontsize=9.5)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set(title="Each trained variant by validation (95% CI)", xlabel="Test accuracy (%), one seed")


def _size_label(group: pd.DataFrame) -> str:
    """``r=2, 8`` for rank-sized points, ``20 tok`` for prompt tuning, nothing for size-less methods."""
    keys = group["size_key"] if "size_key" in group else pd.Series(["lora_r"] * len(group), index=group.index)
    ranks = sorted({int(r) for r, k in zip(group["lora_r"], keys) if k == "lora_r"})
    tokens = sorted({int(t) for t, k in zip(group.get("prompt_tokens", keys), keys) if k == "prompt_tokens"})
    parts = (["r=" + ", ".join(map(str, ranks))] if ranks else []) + [f"{t} tok" for t in tokens]
    return "; ".join(parts)


def seed_comparison(statistics: Mapping[str, Any]) -> Figure:
    """Per-seed accuracy of every setting of the seed study (chosen, baseline, grid variants), with the mean and
    its interval over seeds and test rows."""
    settings = statistics["settings"]
    colors = sns.color_palette(PALETTE, len(settings))
    confidence = statistics.get("confidence", CONFIDENCE)
    with _style():
        fig, ax = _figure(size=(6.4, 1.7 + 0.85 * len(settings)))
        for y, (entry, color) in enumerate(zip(settings, colors)):
            acc = 100 * np.asarray(entry["accuracy"], dtype=float)
            lo, hi = (100 * v for v in entry["bootstrap_ci"])
            ax.plot([lo, hi], [y, y], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt",
                    label=f"{int(100 * confidence)}% CI, seeds and rows" if y == 0 else None)
            ax.scatter(acc, [y] * len(acc), color=color, s=45, zorder=3, label="one seed" if y == 0 else None)
            ax.scatter([100 * entry["mean"]], [y], marker="|", s=600, color="black", zorder=4,
                       label="mean over seeds" if y == 0 else None)
        names = [f"{e['role']}\n{describe_config(e)}\n{int(e['trainable_params']):,} params" for e in settings]
        ax.set_yticks(range(len(settings)), names)
        ax.set_ylim(-0.6, len(settings) - 0.4)
        ax.invert_yaxis()
        what = "Chosen configuration vs baseline" if len(settings) == 2 else "Settings of the seed study"
        ax.set(title=f"{what} over {len(settings[0]['seeds'])} seeds", xlabel="Test accuracy (%)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --------------------------------------------------------------------------- merging (05)
def merging_accuracy(frame: pd.DataFrame) -> Figure:
    """One panel per task: each merged combination and the multi-task adapter with its 95% interval,
    against that task's own adapter (the ceiling, a green band) and its head alone (the floor, dashed).

    ``frame``: :func:`lora_agnews.studies.merging_study.results_frame` (rows ``own adapter``, ``head only``,
    ``multi-task`` and one ``merge ...`` per combination for every task).
    """
    tasks = list(dict.fromkeys(frame["task"]))
    shown = [m for m in dict.fromkeys(frame["method"]) if m not in (OWN, HEAD_ONLY)]
    colors = dict(zip(shown, sns.color_palette(PALETTE, len(shown))))
    with _style():
        fig, axes = _figure(ncols=len(tasks), size=(2.7 * len(tasks) + 1.8, 1.9 + 0.5 * len(shown)),
                            sharey=True, squeeze=False)
        for ax, task in zip(axes[0], tasks):
            rows = frame[frame["task"] == task].set_index("method")
            own = rows.loc[OWN]
            ax.axvspan(100 * own["ci_low"], 100 * own["ci_high"], color="tab:green", alpha=0.15, lw=0)
            ax.axvline(100 * own["accuracy"], color="tab:green", lw=2, label="own adapter (ceiling)")
            if HEAD_ONLY in rows.index:
                ax.axvline(100 * rows.loc[HEAD_ONLY, "accuracy"], color="0.35", ls="--", lw=1.5,
                           label="head only (floor)")
            if "chance" in rows and pd.notna(own["chance"]):  # a score whose interval reaches it is no evidence
                ax.axvline(100 * own["chance"], color="firebrick", ls=":", lw=1.5, label="chance")
            for y, method in enumerate(shown):
                if method not in rows.index:
                    continue
                r = rows.loc[method]
                ax.errorbar(100 * r["accuracy"], y, xerr=[[100 * (r["accuracy"] - r["ci_low"])],
                                                          [100 * (r["ci_high"] - r["accuracy"])]],
                            fmt="o", color=colors[method], ms=7, capsize=3)
            ax.set_title(f"{task}\n({int(own['n_classes'])} classes, {int(own['n_test']):,} test rows)", fontsize=12)
            ax.set_xlabel("Test accuracy (%)")
        axes[0][0].set_yticks(range(len(shown)), [merge_label(m) for m in shown])
        axes[0][0].set_ylim(len(shown) - 0.5, -0.5)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle("Each task scored by its own head on the merged adapters")
    return fig


def quantization(runs: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Left: test accuracy of every run (dots, one per seed) and the mean per base; middle: the frozen base's
    memory as held beside its float32 size; right: the peak resident memory of each run's process (its own
    scale: a small base is a sliver of a process that holds torch and the data).

    ``runs``: the study's ``runs`` rows; ``summary``: :func:`lora_agnews.studies.quantize_study.summary_frame`.
    """
    labels = list(summary["label"])
    by_scheme = dict(zip(summary["scheme"], labels))
    colors = dict(zip(labels, sns.color_palette(PALETTE, len(labels))))
    with _style():
        fig, (acc, mem, rss) = _figure(ncols=3, size=(13.0, 1.8 + 0.55 * len(labels)), sharey=True)
        for y, row in enumerate(summary.itertuples()):
            points = runs[runs["scheme"] == row.scheme]["accuracy"] * 100
            acc.scatter(points, [y] * len(points), color=colors[row.label], s=36, alpha=0.8, zorder=3)
            acc.plot([100 * row.accuracy] * 2, [y - 0.3, y + 0.3], color=colors[row.label], lw=3)
        acc.set_yticks(range(len(labels)), labels)
        acc.set_ylim(len(labels) - 0.5, -0.5)
        acc.set_xlabel("Test accuracy (%): runs (dots), mean (bar)")
        acc.set_title("Accuracy, same test rows")
        for y, row in enumerate(summary.itertuples()):
            mem.barh(y, row.base_fp32_mib, 0.6, color="0.85", label="at float32" if y == 0 else None)
            mem.barh(y, row.base_mib, 0.6, color=colors[row.label], label="as held" if y == 0 else None)
            if row.peak_rss_mib is not None and row.peak_rss_mib == row.peak_rss_mib:
                rss.barh(y, row.peak_rss_mib, 0.6, color=colors[row.label], alpha=0.6)
        mem.set_xlabel("Frozen base (MiB)")
        mem.set_title("Frozen base: held vs float32")
        mem.legend(loc="lower right", frameon=True)
        rss.set_xlabel("Process peak RSS (MiB)")
        rss.set_title("Each run's process, peak")
        _thousands(rss, "x")
        fig.suptitle(f"What a quantized frozen base costs ({', '.join(by_scheme[s] for s in summary['scheme'])})")
    return fig


def close(fig: Figure) -> None:
    """Free a figure that will not be displayed (tests, batch use)."""
    plt.close(fig)


__all__ = ["class_balance", "length_distributions", "parameter_breakdown", "training_curves",
           "confusion_matrices", "reliability_diagram", "accuracy_vs_params", "seed_comparison", "merging_accuracy", "quantization", "close"]
