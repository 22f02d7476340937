"""Labels travel with the data: tasks with 2, 3 and 5 classes through the real training path.

Each synthetic task is a directory of ``label,text`` CSVs whose words predict the class, so the
tiny random RoBERTa learns it; its class names must reach the head, the metrics, the confusion
plot, the adapter's record and card, ``predict`` and the exploration tables, and other labels
anywhere must be refused with both sides named.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import task_config

from lora_agnews import cli
from lora_agnews.core import config
from lora_agnews.studies import explore
from lora_agnews.reporting import plots
from lora_agnews.core.adapter import load_adapter
from lora_agnews.core.card import read_model_card
from lora_agnews.core.dataset import load_splits, task_labels
from lora_agnews.core.tasks import registry
from lora_agnews.core.tasks.registry import DataError, TaskError

TASKS = {2: ["bad", "good"], 3: ["alpha", "beta", "gamma"], 5: ["e1", "e2", "e3", "e4", "e5"]}


def write_task(root: Path, names: list[str], per_class: int = 36, classes_txt: bool = False) -> Path:
    """``train.csv`` / ``test.csv`` (header label,text): each class has its own words, plus shared noise."""
    rng = np.random.default_rng(len(names))
    words = {n: [f"{n}w{i}" for i in range(6)] for n in names}
    shared = [f"common{i}" for i in range(8)]
    root.mkdir(parents=True)
    for split, n in (("train", per_class), ("test", per_class // 3)):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["label", "text"])
            for name in names:
                for _ in range(n):
                    text = " ".join([*rng.choice(words[name], 4), *rng.choice(shared, 3)])
                    out.writerow([name, text])
    if classes_txt:  # an order that is not the sorted one
        (root / "classes.txt").write_text("\n".join(reversed(names)) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    from lora_agnews.core.train import train

    from conftest import outputs_under

    root = tmp_path_factory.mktemp("tasks")
    out = {}
    with outputs_under(root):
        for k, names in TASKS.items():
            directory = write_task(root / f"task{k}", names, classes_txt=(k == 3))
            cfg = task_config(directory)
            metrics = train(cfg, root / f"run{k}")
            out[k] = {"dir": directory, "cfg": cfg, "metrics": metrics, "run": root / f"run{k}",
                      "names": list(reversed(names)) if k == 3 else names}
    return out


@pytest.mark.parametrize("k", sorted(TASKS))
def test_the_task_labels_reach_head_metrics_and_record(trained: dict, k: int) -> None:
    t = trained[k]
    m = t["metrics"]
    assert task_labels(t["cfg"]) == tuple(t["names"])  # classes.txt fixes the order (k=3)
    assert m["labels"] == t["names"]
    assert list(m["per_class"]) == t["names"] or sorted(m["per_class"]) == sorted(t["names"])
    assert np.asarray(m["confusion_matrix"]).shape == (k, k)
    assert m["accuracy"] > 1.5 / k  # the words predict the class: clearly above chance
    saved = np.load(t["run"] / "test_predictions.npz")["logits"]
    assert saved.shape[1] == k
    record = json.loads((t["run"] / "adapter" / "lora_agnews_config.json").read_text())
    assert record["labels"] == t["names"]
    body = (t["run"] / "adapter" / "README.md").read_text(encoding="utf-8")
    assert "Labels: " + ", ".join(f"{i} {n}" for i, n in enumerate(t["names"])) in body
    assert "AG News topic" not in body and read_model_card(t["run"] / "adapter")["pipeline_tag"] == "text-classification"


@pytest.mark.parametrize("k", sorted(TASKS))
def test_a_head_as_wide_as_the_task_counts_exactly(trained: dict, k: int) -> None:
    from lora_agnews.core.budget import count_trainable

    t = trained[k]
    linear = count_trainable(t["cfg"].replace(head="linear"))
    four = count_trainable(t["cfg"].replace(head="linear", task="agnews"))
    hidden = 64  # tiny-roberta
    assert linear["head"] == hidden * k + k and four["head"] == hidden * 4 + 4
    assert t["metrics"]["trainable_params"] == count_trainable(t["cfg"])["total"]


@pytest.mark.parametrize("k", [2, 5])
def test_predict_names_the_tasks_classes(trained: dict, k: int, capsys: pytest.CaptureFixture) -> None:
    t = trained[k]
    first = t["names"][0]
    text = f"{first}w0 {first}w1 {first}w2 common1"
    assert cli.main(["predict", "--adapter", str(t["run"] / "adapter"), "--json", text]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert list(row["probabilities"]) == t["names"] and row["label"] in t["names"]
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-5


def test_plots_and_exploration_use_the_tasks_names(trained: dict) -> None:
    t = trained[5]
    splits = load_splits(t["cfg"])
    assert splits.task.name == "task5" and splits.labels == tuple(t["names"])
    balance = explore.class_balance(splits)
    assert list(balance.index) == t["names"]
    shown = explore.examples_per_class(splits.train, splits.labels, n=1)
    assert sorted(shown["class"]) == sorted(t["names"])
    fig = plots.confusion_matrices(t["metrics"]["confusion_matrix"], t["metrics"]["labels"])
    assert [x.get_text() for x in fig.axes[0].get_xticklabels()] == t["names"]
    plots.close(fig)


def test_an_adapter_used_for_another_task_is_refused_naming_both(trained: dict) -> None:
    with pytest.raises(TaskError, match=r"has 2 label\(s\) \['bad', 'good'\].*has 3 \['gamma', 'beta', 'alpha'\]"):
        load_adapter(trained[2]["run"] / "adapter", expect=trained[3]["names"])


def test_scoring_another_tasks_rows_is_refused(trained: dict) -> None:
    from lora_agnews.core.tokens import encode
    from lora_agnews.core.evaluate import evaluate_model

    model, tokenizer, _ = load_adapter(trained[2]["run"] / "adapter")
    rows = load_splits(trained[2]["cfg"]).test
    with pytest.raises(TaskError, match="the model has 2 label"):
        evaluate_model(model, encode(rows, tokenizer, 32), tokenizer.pad_token_id, 8, model.device, "fp32",
                       names=trained[5]["names"])


def test_a_pretrained_head_of_another_width_names_both(tmp_path: Path) -> None:
    import transformers as tf

    from lora_agnews.core.build import build_model
    from lora_agnews.core.encoders import ModelError

    ckpt = tmp_path / "classifier"
    tf.RobertaForSequenceClassification(tf.RobertaConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=64, type_vocab_size=1, pad_token_id=1, num_labels=4)).save_pretrained(ckpt)
    directory = write_task(tmp_path / "two", TASKS[2], per_class=6)
    cfg = task_config(directory, model_name=str(ckpt), init="pretrained", lora_targets="query,value")
    with pytest.raises(ModelError, match=r"head for 4 classes .*does not fit the task's 2 \(bad, good\)"):
        build_model(cfg, vocab_size=120, pad_token_id=1)


def test_a_class_missing_from_training_names_the_task(tmp_path: Path) -> None:
    directory = write_task(tmp_path / "t", TASKS[3], per_class=6)
    rows = (directory / "train.csv").read_text(encoding="utf-8").splitlines()
    (directory / "train.csv").write_text("\n".join(r for r in rows if not r.startswith("beta")) + "\n",
                                         encoding="utf-8")
    with pytest.raises(DataError, match=r"each of the 3 classes of 't'.*'beta': 0"):
        load_splits(task_config(directory))


def test_task_records_round_trip() -> None:
    t = registry.Task("x", ("a", "b"), "here")
    assert registry.Task.from_dict(t.to_dict()) == t
    with pytest.raises(TaskError, match="at least 2"):
        registry.Task("x", ("a",))
    with pytest.raises(TaskError, match="more than once"):
        registry.Task("x", ("a", "a"))


def test_the_seed_studys_baseline_keeps_the_task() -> None:
    """The starting point's setting is compared on the same task's rows, never silently on AG News."""
    from lora_agnews.studies.experiments import baseline_config

    cfg = config.load("smoke", {"task": "bbc_news", "method": "loha"})
    base = baseline_config(cfg)
    assert base.task == "bbc_news" and base.method == "lora"


def test_the_stamp_names_the_task_and_its_source() -> None:
    from lora_agnews.reporting import text as reporting

    note = reporting.profile_note(config.load("demo", {"task": "bbc_news"}), {"pretrained": True})
    assert "BBC News topics (bbc_news) from its offline copy on PyPI" in note
    assert "not the profile's AG News" in note and "synthetic sample" not in note
