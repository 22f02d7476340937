"""Figures of a multi-label run, in :mod:`lora_agnews.reporting.plots`' style: per-label F1, label co-occurrence.

Each function takes the metrics record :func:`lora_agnews.core.tasks.multilabel_scores.compute_metrics` wrote and
returns a matplotlib Figure (saved once by :func:`lora_agnews.core.paths.save_figure`, as the other figures are).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .plots import PALETTE, _figure, _style


def per_label_f1(metrics: Mapping[str, Any]) -> Figure:
    """Horizontal bars of each label's test F1 (labels in task order), its support in the tick label,
    and the run's micro and macro F1 as reference lines."""
    names = list(metrics["labels"])
    rows = pd.DataFrame([{"label": f"{n} ({metrics['per_class'][n]['support']:,})",
                          "F1": metrics["per_class"][n]["f1"]} for n in names])
    with _style():
        fig, ax = _figure(size=(6.4, max(2.6, 0.32 * len(names) + 1.4)))
        sns.barplot(rows, x="F1", y="label", color=sns.color_palette(PALETTE)[0], ax=ax)
        for key, style in (("micro_f1", "--"), ("macro_f1", ":")):
            ax.axvline(metrics[key], color="0.3", linestyle=style,
                       label=f"{key.replace('_f1', '')} F1 {metrics[key]:.3f}")
        ax.set(xlim=(0, 1), xlabel="F1 on the test split", ylabel="Label (test positives)",
               title=f"Per-label F1 ({metrics['n_eval']:,} test examples)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    return fig


def cooccurrence(metrics: Mapping[str, Any]) -> Figure:
    """Label co-occurrence on the test split, truth beside prediction: cell (i, j) counts examples holding
    both labels; the diagonal counts examples holding the label. Shared colour scale, so the panels compare."""
    names = list(metrics["labels"])
    truth = np.asarray(metrics["cooccurrence"]["truth"], dtype=int)
    pred = np.asarray(metrics["cooccurrence"]["predicted"], dtype=int)
    top = max(1, int(max(truth.max(), pred.max())))
    annotate = len(names) <= 12
    with _style():
        side = max(4.4, 0.38 * len(names) + 2.4)
        fig, axes = _figure(ncols=2, size=(2 * side + 1, side))
        for ax, matrix, title in ((axes[0], truth, "True label sets"), (axes[1], pred, "Predicted label sets")):
            sns.heatmap(matrix, annot=annotate, fmt=",d", cmap="Blues", vmin=0, vmax=top, square=True, cbar=ax is axes[1],
                        xticklabels=names, yticklabels=names, ax=ax, annot_kws={"fontsize": 9},
                        cbar_kws={"label": "Examples", "shrink": 0.8})
            ax.set(title=title, xlabel="Label", ylabel="Label")
            ax.tick_params(axis="y", rotation=0)
        card = metrics["label_cardinality"]
        fig.suptitle(f"Label co-occurrence on the test split (labels per example: true {card['truth']:.2f}, "
                     f"predicted {card['predicted']:.2f})")
    return fig
