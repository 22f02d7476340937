"""Multi-label tasks through the real path: synthetic label-set tasks (2, 3 and 5 labels, empty sets
included) on the smoke profile's tiny model; metrics held to scikit-learn's on fixed predictions;
thresholds, predict, export, a reload in a fresh process, the hub loaders faked, and bad input refused.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import task_config

from lora_agnews import cli
from lora_agnews.core import config
from lora_agnews.core.dataset import load_splits, load_task_rows, task_labels, task_multi_label
from lora_agnews.core.tasks.directory import load_directory_task
from lora_agnews.core.tasks.label_sets import is_multi_label_model
from lora_agnews.core.tasks.multilabel_scores import (BOOTSTRAPPED, THRESHOLD_GRID, ThresholdError, _fast_scores,
                                                      _scores, apply_thresholds, choose_thresholds, compute_metrics)
from lora_agnews.core.tasks import registry
from lora_agnews.core.tasks.registry import DataError, Task, TaskError

REPO = Path(__file__).resolve().parents[1]
TASKS = {2: ["neg", "pos"], 3: ["alpha", "beta", "gamma"], 5: ["e1", "e2", "e3", "e4", "e5"]}


def write_multi_label_task(root: Path, names: list[str], n_train: int = 150, n_test: int = 45,
                           classes_txt: bool = False, seed: int = 0) -> Path:
    """``label,text`` CSVs whose cells hold 0..3 labels joined by ``|``; each label has its own words."""
    rng = np.random.default_rng(seed + len(names))
    words = {n: [f"{n}w{i}" for i in range(6)] for n in names}
    shared = [f"common{i}" for i in range(8)]
    root.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["label", "text"])
            for i in range(n):
                k = [0, 1, 1, 2, 2, 3][i % 6] if len(names) > 2 else [0, 1, 2][i % 3]
                chosen = sorted(rng.choice(len(names), size=min(k, len(names)), replace=False))
                tokens = [t for c in chosen for t in rng.choice(words[names[c]], 3)] + list(rng.choice(shared, 3))
                rng.shuffle(tokens)
                out.writerow(["|".join(names[c] for c in chosen), " ".join(tokens)])
    if classes_txt:  # an order that is not the sorted one
        (root / "classes.txt").write_text("\n".join(reversed(names)) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    from lora_agnews.core.train import train

    from conftest import outputs_under

    root = tmp_path_factory.mktemp("multilabel")
    out = {}
    with outputs_under(root):
        for k, names in TASKS.items():
            directory = write_multi_label_task(root / f"task{k}", names, classes_txt=(k == 3))
            cfg = task_config(directory)
            metrics = train(cfg, root / f"run{k}")
            out[k] = {"dir": directory, "cfg": cfg, "metrics": metrics, "run": root / f"run{k}", "root": root,
                      "names": list(reversed(names)) if k == 3 else names}
    return out


# --------------------------------------------------------------------------- metrics on fixed predictions
def fixed(seed: int = 3, rows: int = 200, k: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((rows, k)) < 0.3).astype(int)
    truth[:15] = 0  # empty label sets
    probs = np.clip(truth * 0.45 + rng.random((rows, k)) * 0.6, 0.001, 0.999)
    return truth, probs, (probs >= 0.5).astype(int)


def test_metrics_equal_scikit_learns_on_fixed_predictions() -> None:
    from sklearn.metrics import (accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support,
                                 precision_score, recall_score)

    truth, probs, pred = fixed()
    names = [f"l{i}" for i in range(5)]
    m = compute_metrics(truth, probs, 0.5, names=names, n_boot=50)
    assert m["micro_f1"] == pytest.approx(f1_score(truth, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
    assert m["samples_f1"] == pytest.approx(f1_score(truth, pred, average="samples", zero_division=1.0))
    assert m["micro_precision"] == pytest.approx(precision_score(truth, pred, average="micro"))
    assert m["macro_recall"] == pytest.approx(recall_score(truth, pred, average="macro"))
    assert m["subset_accuracy"] == m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(truth, pred))
    p, r, f, s = precision_recall_fscore_support(truth, pred, zero_division=0)
    for i, n in enumerate(names):
        assert m["per_class"][n] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
    assert m["label_cardinality"] == pytest.approx({"truth": truth.sum(1).mean(), "predicted": pred.sum(1).mean()})
    assert np.array_equal(np.diag(m["cooccurrence"]["truth"]), truth.sum(0))
    assert m["empty_truth_share"] == pytest.approx(np.mean(truth.sum(1) == 0))
    for key, (lo, hi) in m["intervals"].items():
        assert lo <= m[key] + 1e-9 and m[key] - 1e-9 <= hi, key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bootstraps_fast_scores_equal_scikit_learns(seed: int) -> None:
    truth, _, pred = fixed(seed, rows=60, k=3)
    fast = _fast_scores(truth, pred)
    slow = _scores(truth, pred)
    for key in BOOTSTRAPPED:
        assert fast[key] == pytest.approx(slow[key]), key


def test_global_threshold_maximises_micro_f1_and_rare_labels_keep_it() -> None:
    from sklearn.metrics import f1_score

    truth, probs, _ = fixed(rows=300, k=3)
    truth[:, 2] = 0
    truth[:4, 2] = 1  # 4 positives: below MIN_LABEL_POSITIVES
    record = choose_thresholds(probs, truth)
    best = max(f1_score(truth, (probs >= t).astype(int), average="micro") for t in THRESHOLD_GRID)
    assert record["validation_micro_f1"] == pytest.approx(best)
    assert f1_score(truth, (probs >= record["global"]).astype(int), average="micro") == pytest.approx(best)
    assert record["tuned"] == [True, True, False] and record["per_label"][2] == record["global"]
    for k in (0, 1):
        own = f1_score(truth[:, k], probs[:, k] >= record["per_label"][k])
        assert own >= f1_score(truth[:, k], probs[:, k] >= record["global"]) - 1e-12
    assert all(0 < t < 1 for t in record["per_label"])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_a_threshold_outside_the_open_unit_interval_is_refused(bad: float) -> None:
    with pytest.raises(ThresholdError, match=r"outside \(0, 1\)"):
        apply_thresholds(np.full((2, 2), 0.5), bad)


# --------------------------------------------------------------------------- data
def test_a_directory_with_bar_cells_is_a_multi_label_task(tmp_path: Path) -> None:
    directory = write_multi_label_task(tmp_path / "t", TASKS[3], classes_txt=True)
    cfg = task_config(directory)
    splits = load_splits(cfg)
    assert splits.task.multi_label and task_multi_label(cfg)
    assert splits.labels == tuple(reversed(TASKS[3]))  # classes.txt fixes the order
    rows = pd.read_csv(directory / "train.csv", keep_default_na=False)
    assert (rows["label"] == "").any() and any(() == s for s in splits.train["label"])  # empty sets kept
    assert sum(splits.sizes().values()) == 150 + 45
    assert splits.task.to_dict()["multi_label"] is True

    assert Task.from_dict(splits.task.to_dict()) == splits.task
    assert "multi_label" not in Task("x", ("a", "b")).to_dict()  # single-label records unchanged


def test_a_directory_without_bars_stays_single_label(tmp_path: Path) -> None:
    from test_tasks import write_task

    cfg = task_config(write_task(tmp_path / "single", ["bad", "good"]))
    assert not task_multi_label(cfg) and not load_splits(cfg).task.multi_label


def test_a_label_not_in_classes_txt_is_refused_naming_the_line(tmp_path: Path) -> None:
    directory = write_multi_label_task(tmp_path / "t", TASKS[3], classes_txt=True)
    with open(directory / "test.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["alpha|delta", "alphaw0 common1"])
    with pytest.raises(DataError, match=r"test\.csv line 47: label 'delta' is not in classes\.txt"):
        load_splits(task_config(directory))


def test_a_bar_in_a_single_label_tasks_file_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "rt"
    directory.mkdir()
    for split in ("train", "test"):
        (directory / f"{split}.csv").write_text("label,text\npos,good film\nneg|pos,mixed film\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3: label 'neg\|pos' holds several labels .* rotten_tomatoes is single-label"):
        load_task_rows("rotten_tomatoes", str(directory))


def test_a_class_name_with_a_bar_in_classes_txt_stays_single_label(tmp_path: Path) -> None:
    directory = tmp_path / "bar"
    directory.mkdir()
    (directory / "classes.txt").write_text("a|b\nc\n", encoding="utf-8")
    for split in ("train", "test"):
        (directory / f"{split}.csv").write_text("label,text\na|b,x y\nc,z w\n", encoding="utf-8")
    loaded = load_directory_task(directory)
    assert not loaded.task_identity.multi_label and loaded.train["label"].tolist() == [0, 1]


# --------------------------------------------------------------------------- training
def test_the_loss_is_bce_on_sigmoid_outputs_with_the_same_head(tmp_path: Path) -> None:
    import torch
    import torch.nn.functional as F

    from lora_agnews.core.budget import count_trainable
    from lora_agnews.core.tokens import PadCollator
    from lora_agnews.core.train import prepare

    directory = write_multi_label_task(tmp_path / "t", TASKS[5])
    cfg = task_config(directory)
    prep = prepare(cfg)
    assert prep.model.config.problem_type == "multi_label_classification"
    batch = PadCollator(prep.tokenizer.pad_token_id)([prep.train[i] for i in range(8)])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (8, 5)
    out = prep.model(**batch)
    assert out.loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(out.logits, batch["labels"]).item(), rel=1e-5)
    single = count_trainable(cfg.replace(task="agnews"))  # same head, K outputs: 5 vs AG News' 4
    assert prep.breakdown["head"] - single["head"] == (64 + 1) * (5 - 4)


@pytest.mark.parametrize("k", sorted(TASKS))
def test_training_scores_label_sets_and_records_thresholds(trained: dict, k: int) -> None:
    t = trained[k]
    m = t["metrics"]
    assert m["kind"] == "multi_label" and m["labels"] == t["names"]
    assert m["micro_f1"] > 0.5 and m["best_validation_micro_f1"] is not None
    assert set(m["thresholds"]) >= {"global", "per_label", "tuned", "rule"} and len(m["thresholds"]["per_label"]) == k
    record = json.loads((t["run"] / "adapter" / "lora_agnews_config.json").read_text())
    assert record["multi_label"] is True and record["thresholds"]["per_label"] == m["thresholds"]["per_label"]
    saved = np.load(t["run"] / "test_predictions.npz")
    assert saved["logits"].shape == saved["labels"].shape == (45, k)
    card = (t["run"] / "adapter" / "README.md").read_text(encoding="utf-8")
    assert "micro F1" in card and "subset accuracy" in card and "multi-label" in card and "thresholds" in card
    history = json.loads((t["run"] / "history.json").read_text())
    assert any("eval_micro_f1" in h for h in history)


def test_an_empty_training_label_set_everywhere_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    (directory / "classes.txt").write_text("a\nb\n")
    (directory / "train.csv").write_text("label,text\n,x\n,y\n,z\n")
    (directory / "test.csv").write_text("label,text\na|b,x\n")
    with pytest.raises(DataError, match="no labelled example"):
        load_splits(task_config(directory))


def test_label_smoothing_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from lora_agnews.core.train import train

    directory = write_multi_label_task(tmp_path / "t", TASKS[2])
    with pytest.raises(TaskError, match="label_smoothing"):
        train(task_config(directory, label_smoothing=0.1), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "adapter").exists()


# --------------------------------------------------------------------------- predict, export, reload
def test_predict_prints_the_label_set_and_every_probability(trained: dict, capsys: pytest.CaptureFixture) -> None:
    t = trained[5]
    text = "e1w0 e1w1 e1w2 e4w0 e4w3 e4w1 common1"
    assert cli.main(["predict", "--adapter", str(t["run"] / "adapter"), "--json", text]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert list(row["probabilities"]) == t["names"] and set(row["labels"]) <= set(t["names"])
    assert row["labels"] == [n for n in t["names"] if row["probabilities"][n] >= row["thresholds"][n]]
    assert sum(row["probabilities"].values()) != pytest.approx(1.0)  # sigmoids, not a softmax
    assert cli.main(["predict", "--adapter", str(t["run"] / "adapter"), "--threshold", "0.01", text]) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[0] == "|".join(t["names"])  # every label reaches 0.01


def test_predict_refuses_a_threshold_outside_the_interval(trained: dict, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["predict", "--adapter", str(trained[2]["run"] / "adapter"), "--threshold", "1", "x"]) != 0
    assert "--threshold 1 is outside (0, 1)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_reload_in_a_fresh_process_predicts_the_same(trained: dict) -> None:
    from lora_agnews.core.adapter import load_adapter, predict_texts

    t = trained[3]
    texts = ["alphaw0 gammaw1 gammaw2 common3", "betaw4 common0"]
    model, tokenizer, cfg = load_adapter(t["run"] / "adapter")
    here = predict_texts(model, tokenizer, cfg, texts)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "lora_agnews", "predict", "--json", "--adapter",
                           str(t["run"] / "adapter"), *texts], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    there = np.array([[r["probabilities"][n] for n in t["names"]] for r in rows])
    assert np.allclose(here, there, atol=1e-6)


@pytest.mark.slow  # two tiny quantized trainings (about 10 s each on 2 cores) and a fresh process
def test_a_multi_label_run_on_a_quantized_base_reloads_in_a_fresh_process(trained: dict, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from conftest import fresh_process_logits, outputs_under
    from lora_agnews.core.train import train

    directory = trained[3]["dir"]
    with outputs_under(tmp_path):
        runs = {scheme: tmp_path / scheme for scheme in ("nf4", "int8")}
        metrics = {scheme: train(task_config(directory, quantize=scheme), run) for scheme, run in runs.items()}
    got = fresh_process_logits({s: r / "adapter" for s, r in runs.items()}, tmp_path)
    for scheme, run in runs.items():
        m = metrics[scheme]
        assert m["kind"] == "multi_label" and m["config"]["quantize"] == scheme and 0 <= m["micro_f1"] <= 1
        record = json.loads((run / "adapter" / "lora_agnews_config.json").read_text())
        assert record["multi_label"] and record["config"]["quantize"] == scheme
        assert record["thresholds"]["per_label"] == m["thresholds"]["per_label"]
        with np.load(run / "test_predictions.npz") as saved:
            assert saved["labels"].shape == saved["logits"].shape == (45, 3)
            np.testing.assert_allclose(got[scheme], saved["logits"], atol=1e-4, rtol=1e-4, err_msg=scheme)
        from lora_agnews.studies.audit import audit_run

        assert audit_run(run, tmp_path).reproduced, scheme  # the pipeline's audit: the same label sets again


def test_a_multi_label_adapter_for_a_single_label_task_is_refused_and_the_reverse(trained: dict) -> None:
    from lora_agnews.core.adapter import load_adapter

    with pytest.raises(TaskError, match="is multi-label .* but the task it is used for is single-label"):
        load_adapter(trained[2]["run"] / "adapter", expect_multi_label=False)
    model, _, _ = load_adapter(trained[2]["run"] / "adapter", expect_multi_label=True)
    assert is_multi_label_model(model)


def test_export_writes_problem_type_and_thresholds_and_the_pipeline_gives_sigmoids(trained: dict,
                                                                                   tmp_path: Path) -> None:
    from transformers import pipeline

    from lora_agnews.core.adapter import load_adapter, predict_texts
    from lora_agnews.core.export import export

    t = trained[2]
    result = export(t["run"] / "adapter", tmp_path / "plain")
    written = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert written["problem_type"] == "multi_label_classification"
    assert list(written["label_thresholds"]) == t["names"]
    text = "posw0 posw1 negw2 common1"
    scores = pipeline("text-classification", model=str(result.out_dir), top_k=None)([text])[0]
    got = {s["label"]: s["score"] for s in scores}
    model, tokenizer, cfg = load_adapter(t["run"] / "adapter")
    expected = predict_texts(model, tokenizer, cfg, [text])[0]
    assert np.allclose([got[n] for n in t["names"]], expected, atol=1e-4)
    assert "Multi-label" in (tmp_path / "plain" / "README.md").read_text(encoding="utf-8")


def test_figures_of_a_multi_label_run(trained: dict) -> None:
    from lora_agnews.reporting import multilabel_plots
    from lora_agnews.reporting.plots import close

    m = trained[5]["metrics"]
    for fig in (multilabel_plots.per_label_f1(m), multilabel_plots.cooccurrence(m)):
        assert fig.axes[0].get_title() and fig.axes[0].get_xlabel()
        close(fig)


# --------------------------------------------------------------------------- the hub, faked
class FakeSplit:
    def __init__(self, frame: pd.DataFrame, features: dict | None = None):
        self.frame, self.features = frame, features or {}

    def to_pandas(self) -> pd.DataFrame:
        return self.frame.copy()


def test_go_emotions_from_the_hub_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    names = list(registry.TASKS["go_emotions"].labels)
    feature = SimpleNamespace(feature=SimpleNamespace(names=names))
    calls = []

    def fake(hub_id: str, name: str) -> dict:
        calls.append((hub_id, name))
        train = pd.DataFrame({"text": ["I love it", "so sad and angry", "ok"], "labels": [[18], [25, 2], [27]],
                              "id": ["a", "b", "c"]})
        test = pd.DataFrame({"text": ["thanks!"], "labels": [[15, 17]], "id": ["d"]})
        return {"train": FakeSplit(train, {"labels": feature}), "test": FakeSplit(test, {"labels": feature})}

    monkeypatch.setattr("lora_agnews.core.tasks.hub.load_dataset", fake)
    loaded = load_task_rows("go_emotions", "hub")
    assert calls == [("google-research-datasets/go_emotions", "simplified")]
    assert loaded.task_identity.multi_label and len(loaded.labels) == 28
    assert loaded.train["label"].tolist() == [(18,), (2, 25), (27,)] and loaded.test["label"].tolist() == [(15, 17)]
    cfg = config.load("smoke", {"task": "go_emotions", "data": "hub"})
    assert task_multi_label(cfg) and task_labels(cfg) == tuple(names)


def test_reuters_modapte_from_the_hub_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(hub_id: str, name: str) -> dict:
        assert (hub_id, name) == ("ucirvine/reuters21578", "ModApte")
        train = pd.DataFrame({"title": ["GRAIN UP", "OIL", "NOTHING"], "text": ["wheat corn rise", "crude falls", "x"],
                              "topics": [["grain", "wheat"], ["crude"], []]})
        test = pd.DataFrame({"title": ["WHEAT"], "text": ["wheat and crude"], "topics": [["wheat", "crude", "gold"]]})
        return {"train": FakeSplit(train), "test": FakeSplit(test)}

    monkeypatch.setattr("lora_agnews.core.tasks.hub.load_dataset", fake)
    loaded = load_task_rows("reuters21578", "hub")
    assert loaded.labels == ("crude", "wheat")  # in both splits; grain (train only) and gold (test only) dropped
    assert loaded.train["label"].tolist() == [(1,), (0,), ()] and loaded.test["label"].tolist() == [(0, 1)]
    assert loaded.train["text"][0] == "GRAIN UP wheat corn rise"
    cfg = config.load("smoke", {"task": "reuters21578", "data": "hub"})
    assert task_labels(cfg) == ("crude", "wheat")  # read from the data: the registry does not list them


def test_an_unreachable_hub_names_the_offline_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr("lora_agnews.core.tasks.hub.load_dataset", unreachable)
    with pytest.raises(DataError, match=r"could not load 'google-research-datasets/go_emotions' \(simplified\).*classes\.txt"):
        load_task_rows("go_emotions", "hub")


# --------------------------------------------------------------------------- merging with a single-label task
@pytest.mark.slow
def test_a_merged_adapter_keeps_each_tasks_head_and_kind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lora_agnews.studies.merging import (OWN, load_merged, make_combination, merge_adapters, merge_method,
                                             read_manifest, score_merged)
    from lora_agnews.studies.merging_study import (build_shared_tokenizer, results_frame, save_tokenizer,
                                                   shared_tokenizer_dir)
    from lora_agnews.core.train import train

    from test_tasks import write_task

    multi = write_multi_label_task(tmp_path / "multi", TASKS[3])
    single = write_task(tmp_path / "single", ["bad", "good"])
    cfgs = [task_config(multi, epochs=2), task_config(single, epochs=2)]
    shared = build_shared_tokenizer(cfgs)
    tokenizer = save_tokenizer(shared, shared_tokenizer_dir(tmp_path / "tok", shared))
    runs = []
    for i, cfg in enumerate(cfgs):
        train(cfg.replace(tokenizer=str(tokenizer)), tmp_path / f"run{i}")
        runs.append(tmp_path / f"run{i}" / "adapter")
    out = merge_adapters(runs, "linear", out_dir=tmp_path / "merged")
    entries = {t["name"]: t for t in read_manifest(out)["tasks"]}
    assert entries["multi"]["multi_label"] and "multi_label" not in entries["single"]
    assert is_multi_label_model(load_merged(out, "multi")[0])
    assert not is_multi_label_model(load_merged(out, "single")[0])
    capsys.readouterr()  # the training logs
    assert cli.main(["predict", "--adapter", str(out), "--task", "multi", "--json", "alphaw0 betaw1"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["thresholds"] == dict(zip(TASKS[3], entries["multi"]["thresholds"]["per_label"]))
    assert cli.main(["predict", "--adapter", str(out), "--task", "single", "--json", "goodw0 goodw1"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-5 and row["label"] in ("bad", "good")

    # scored on the merged adapter, each task by its own head and its own metrics; its own adapter, rescored through
    # the merging path, gives the metrics its run recorded (micro F1 and subset accuracy; accuracy)

    combo = make_combination("linear")
    scores = {s.name: s for s in score_merged(runs, [combo])}
    recorded = [json.loads((r.parent / "metrics.json").read_text()) for r in runs]
    multi_own, single_own = scores["multi"].metrics(OWN), scores["single"].metrics(OWN)
    assert multi_own["kind"] == "multi_label" and "confusion_matrix" not in multi_own
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"):
        assert multi_own[key] == pytest.approx(recorded[0][key], abs=1e-9)
    assert multi_own["thresholds"]["per_label"] == recorded[0]["thresholds"]["per_label"]
    assert "micro_f1" not in single_own and single_own["accuracy"] == pytest.approx(recorded[1]["accuracy"], abs=1e-9)
    merged = scores["multi"].metrics(merge_method(combo))
    assert 0 <= merged["micro_f1"] <= 1 and merged["n_eval"] == recorded[0]["n_eval"]
    frame = results_frame(list(scores.values())).set_index(["task", "method"])
    assert frame.loc[("multi", OWN), "accuracy"] == pytest.approx(recorded[0]["subset_accuracy"], abs=1e-9)
    assert frame.loc[("multi", merge_method(combo)), "accuracy"] == pytest.approx(merged["subset_accuracy"], abs=1e-9)
    assert frame.loc[("single", OWN), "accuracy"] == pytest.approx(recorded[1]["accuracy"], abs=1e-9)


def test_the_merging_study_refuses_a_multi_label_task_for_its_single_label_references(tmp_path: Path) -> None:
    from lora_agnews.studies.merging import MergingError
    from lora_agnews.studies.merging_study import run_study

    from test_tasks import write_task

    multi = write_multi_label_task(tmp_path / "multi", TASKS[2])
    single = write_task(tmp_path / "single", ["bad", "good"])
    with pytest.raises(MergingError, match=r"task\(s\) multi are multi-label.*lora_agnews merge"):
        run_study(task_config(multi), [str(multi), str(single)], tmp_path / "study")
    assert not (tmp_path / "study").exists()


# --------------------------------------------------------------------------- the real pretrained demo encoder
SAMPLE = REPO / "data" / "tasks" / "topics-multilabel"


def test_the_shipped_sample_is_multi_label_with_one_to_three_topics() -> None:
    splits = load_splits(config.load("demo", {"task": str(SAMPLE)}))
    assert splits.task.multi_label and splits.labels == ("World", "Sports", "Business", "Sci/Tech")
    sizes = [len(s) for s in pd.concat([splits.train, splits.validation])["label"]]
    assert set(sizes) <= {1, 2, 3, 4} and 1.5 < np.mean(sizes) < 2.0  # 4: a label added by the sample's noise


def test_the_pretrained_demo_encoders_loss_is_bce_on_the_sample() -> None:
    import torch.nn.functional as F

    from lora_agnews.core.tokens import PadCollator
    from lora_agnews.core.train import prepare

    prep = prepare(config.load("demo", {"task": str(SAMPLE), "max_train_samples": 32, "max_val_samples": 16,
                                        "max_eval_samples": 16}))
    assert prep.model.config.problem_type == "multi_label_classification" and prep.model.config.num_labels == 4
    batch = PadCollator(prep.tokenizer.pad_token_id)([prep.train[i] for i in range(8)])
    out = prep.model(**batch)
    assert out.loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(out.logits, batch["labels"]).item(), rel=1e-5)
    assert prep.breakdown["total"] <= prep.cfg.budget


# --------------------------------------------------------------------------- the book's section (notebook 03)
def test_the_sections_data_summary_counts_the_shipped_sample() -> None:
    from lora_agnews.studies import multilabel_study

    cfg = config.load("smoke")
    splits = multilabel_study.load_study_splits(cfg)
    assert multilabel_study.study_config(cfg).task == str(SAMPLE) and splits.task.multi_label
    summary = multilabel_study.data_summary(splits)
    fit = pd.concat([splits.train, splits.validation])
    co = np.asarray(summary["cooccurrence_train"])
    for i, name in enumerate(splits.labels):
        assert co[i, i] == sum(i in ids for ids in fit["label"])
        for j in range(len(splits.labels)):
            assert co[i, j] == co[j, i] == sum(i in ids and j in ids for ids in fit["label"])
    for split, frame in (("train", splits.train), ("test", splits.test)):
        s = summary["splits"][split]
        assert s["cardinality"] == pytest.approx(np.mean([len(ids) for ids in frame["label"]]))
        assert sum(s["set_sizes"].values()) == s["examples"] == len(frame)
    rows = multilabel_study.cardinality_table(summary).frame
    assert list(rows.index) == ["train", "validation", "test"] and rows.loc["test", "examples"] == len(splits.test)
    assert f"{len(fit):,} training rows" in multilabel_study.cooccurrence_sentence(summary)


def test_a_single_label_multilabel_task_is_refused_by_name() -> None:
    from lora_agnews.studies import multilabel_study

    with pytest.raises(config.ConfigError, match=r"multilabel_task.*'data/tasks/reviews', a single-label task"):
        multilabel_study.load_study_splits(config.load("smoke", {"multilabel_task": "data/tasks/reviews"}))


def test_the_sections_tables_sentence_and_macros_come_from_the_run(trained: dict) -> None:
    from lora_agnews.core.paths import interval, pct
    from lora_agnews.studies import multilabel_study

    t = trained[3]
    result = {"task_name": "task3", "metrics": t["metrics"], "pretrained": False,
              "data": multilabel_study.data_summary(load_splits(t["cfg"]))}
    m = t["metrics"]
    cells = {row[0]: row for row in multilabel_study.scores_table(result).cells()}
    assert cells["micro F1"][1:] == [pct(m["micro_f1"]), interval(*m["intervals"]["micro_f1"])]
    assert cells["Hamming loss"][1] == pct(m["hamming_loss"])
    labels = multilabel_study.per_label_table(result)
    assert [r["label"] for r in labels.rows] == t["names"]
    assert [float(r["threshold"].split()[0]) for r in labels.rows] == pytest.approx(m["thresholds"]["per_label"])
    assert "\\toprule" in labels.latex() and "Sci" not in labels.latex()
    macros = multilabel_study.macros(result)
    assert macros["multilabel_subset_accuracy"] == pct(m["subset_accuracy"])
    assert f"micro F1 {pct(m['micro_f1'])}%" in macros["multilabel_sentence"]
    assert multilabel_study.note(result) is not None  # a random tiny encoder says its numbers prove the path only


def test_the_sections_run_is_the_profiles_recipe_with_the_task_and_its_batch_size() -> None:
    from lora_agnews.studies import multilabel_study

    demo = config.load("demo")
    changed = {k for k, v in multilabel_study.study_config(demo).to_dict().items() if demo.to_dict()[k] != v}
    assert changed == {"task"}
    paper = config.load("paper")
    assert multilabel_study.study_config(paper).batch_size == paper.multilabel_batch_size < paper.batch_size
    with pytest.raises(config.ConfigError, match="multilabel_batch_size' must be 0"):
        config.load("demo", {"multilabel_batch_size": -1})
