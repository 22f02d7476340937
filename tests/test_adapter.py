"""The adapter as an artifact: LoRA weights with the trained head, reloadable in a fresh process
with identical predictions, mergeable, usable from the command line, with a hub model card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lora_agnews.core import config
from lora_agnews.core.adapter import CONFIG_FILE, load_adapter, predict_logits_for_texts, predict_texts
from lora_agnews.core.card import CARD_FILE, read_model_card
from lora_agnews.core.paths import read_json
from lora_agnews.cli import main
from lora_agnews.core.dataset import load_splits
from lora_agnews.core.tasks.agnews import LABELS

HEADLINES = ["Stocks rally as oil prices fall on strong earnings",
             "Striker scores twice as champions win the cup final",
             "New chip doubles battery life of laptops, company says"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, train_smoke) -> Path:
    return train_smoke(tmp_path_factory.mktemp("adapter"), epochs=2)


@pytest.fixture(scope="module")
def loaded(run_dir: Path):
    return load_adapter(run_dir / "adapter")


def test_directory_holds_lora_weights_and_the_trained_head(run_dir: Path) -> None:
    from safetensors import safe_open

    adapter = run_dir / "adapter"
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", CONFIG_FILE, CARD_FILE, "tokenizer.json"} <= names
    assert not [n for n in names if n.startswith(".")], "no temporary leftovers"
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys) and any("lora_B" in k for k in keys)
    head = [k for k in keys if "classifier" in k]
    assert head, "the trained classification head must be saved with the adapter"
    assert not any("word_embeddings.weight" in k and "lora" not in k for k in keys), "no frozen base weights"
    assert read_json(adapter / "adapter_config.json")["modules_to_save"] == ["classifier"]
    metrics = read_json(run_dir / "metrics.json")
    saved = 0
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        for k in keys:
            saved += f.get_tensor(k).numel()
    assert saved == metrics["trainable_params"], "exactly the trainable parameters are saved"


def test_model_card_is_hub_format(run_dir: Path) -> None:
    text = (run_dir / "adapter" / CARD_FILE).read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta == read_model_card(run_dir / "adapter")
    assert meta["library_name"] == "peft"
    assert meta["base_model"] == "tiny-roberta"
    assert meta["pipeline_tag"] == "text-classification"
    metrics = read_json(run_dir / "metrics.json")
    results = meta["model-index"][0]["results"][0]
    assert results["task"]["type"] == "text-classification"
    values = {m["type"]: m["value"] for m in results["metrics"]}
    assert values["accuracy"] == pytest.approx(metrics["accuracy"], abs=5e-5)
    assert values["f1"] == pytest.approx(metrics["macro_f1"], abs=5e-5)
    body = text.split("---\n", 2)[2]
    assert f"{metrics['trainable_params']:,} trainable parameters" in body
    assert "python -m lora_agnews predict --adapter" in body


def test_reloaded_adapter_reproduces_the_test_logits(run_dir: Path, loaded) -> None:
    model, tokenizer, cfg = loaded
    assert cfg == config.load("smoke", {"epochs": 2})
    texts = load_splits(cfg).test["text"].tolist()
    logits = predict_logits_for_texts(model, tokenizer, cfg, texts)
    saved = np.load(run_dir / "test_predictions.npz")
    np.testing.assert_allclose(logits, saved["logits"], rtol=1e-4, atol=1e-4)
    assert (logits.argmax(1) == saved["logits"].argmax(1)).all()


def test_merge_and_unload_gives_the_same_predictions(run_dir: Path) -> None:
    model, tokenizer, cfg = load_adapter(run_dir / "adapter")
    texts = load_splits(cfg).test["text"].tolist()[:64] + HEADLINES
    before = predict_logits_for_texts(model, tokenizer, cfg, texts)
    merged = model.merge_and_unload()
    assert not hasattr(merged, "peft_config"), "a plain transformers model after merging"
    after = predict_logits_for_texts(merged, tokenizer, cfg, texts)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_predict_in_a_fresh_process_matches_in_process(run_dir: Path, loaded, tmp_path: Path) -> None:
    model, tokenizer, cfg = loaded
    expected = predict_texts(model, tokenizer, cfg, HEADLINES + ["Rebels clash with troops near the capital"])
    listing = tmp_path / "headlines.txt"
    listing.write_text("Rebels clash with troops near the capital\n\n", encoding="utf-8")
    env = {**os.environ, "LORA_AGNEWS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "lora_agnews", "predict", "--adapter", str(run_dir / "adapter"),
                          "--json", *HEADLINES, "--file", str(listing)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["text"] for r in rows] == HEADLINES + ["Rebels clash with troops near the capital"]
    got = np.array([[r["probabilities"][name] for name in LABELS] for r in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert [r["label"] for r in rows] == [LABELS[i] for i in expected.argmax(1)]


def test_predict_prints_class_and_probabilities(run_dir: Path, loaded, capsys: pytest.CaptureFixture[str]) -> None:
    model, tokenizer, cfg = loaded
    expected = predict_texts(model, tokenizer, cfg, HEADLINES)
    assert main(["predict", "--adapter", str(run_dir / "adapter"), *HEADLINES]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(HEADLINES)
    for line, text, row in zip(lines, HEADLINES, expected):
        label, top, shown, echoed = line.split("\t")
        assert label == LABELS[int(row.argmax())] and echoed == text
        assert float(top) == pytest.approx(row.max(), abs=1e-3)
        assert shown == ", ".join(f"{n}={p:.3f}" for n, p in zip(LABELS, row))


def test_predict_refuses_bad_input(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    adapter = str(run_dir / "adapter")
    assert main(["predict", "--adapter", adapter]) == 2
    assert "nothing to classify" in capsys.readouterr().err
    assert main(["predict", "--adapter", adapter, "--file", str(tmp_path / "absent.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Caf\xe9 prices soar\n".encode("latin-1"))
    assert main(["predict", "--adapter", adapter, "--file", str(latin)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["predict", "--adapter", str(run_dir), "a headline"]) == 2
    assert f"--adapter {run_dir / 'adapter'}" in capsys.readouterr().err
