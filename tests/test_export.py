"""``export``: a saved adapter, merged, as a plain transformers checkpoint that ``transformers.pipeline``
loads without peft installed, with the same labels and scores as ``predict``; every head of every family
maps onto the family's own head modules; prompt tuning, an occupied --out, a missing adapter and a failed
self-check are clear errors that leave nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lora_agnews.core import config, export as export_mod
from lora_agnews.core.build import build_model, merge
from lora_agnews.cli import main
from lora_agnews.core.tasks.agnews import LABELS
from test_placements import FAMILY_KINDS, tiny_config

SHORT = {"epochs": 1, "max_train_samples": 64, "max_val_samples": 32, "max_eval_samples": 32}
TEXTS = ["Stocks rally as oil prices fall on strong earnings", "Striker scores twice as champions win the cup final",
         "New chip doubles battery life of laptops, company says"]


def leftovers(directory: Path) -> list[str]:
    """Temporary siblings an interrupted or refused export would leave behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short smoke trainings: LoRA with the ``linear`` head (the paper setting's head) and prompt tuning."""
    from lora_agnews.core.train import train

    root = tmp_path_factory.mktemp("export-runs")
    settings = {"linear": {"head": "linear"}, "prompt": {"method": "prompt", "prompt_tokens": 4}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(root / "results"))
        mp.setenv("LORA_AGNEWS_CACHE", str(root / "cache"))
        for name, extra in settings.items():
            train(config.load("smoke", {**SHORT, **extra}), root / name)
    return {name: root / name for name in settings}


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> export_mod.ExportResult:
    return export_mod.export(runs["linear"] / "adapter", tmp_path_factory.mktemp("export") / "plain")


def test_writes_a_plain_checkpoint_with_labels_tokenizer_and_card(exported: export_mod.ExportResult,
                                                                  runs: dict[str, Path]) -> None:
    from safetensors import safe_open

    out = exported.out_dir
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                               "tokenizer_config.json", "README.md", export_mod.MANIFEST_FILE}
    assert leftovers(out.parent) == []
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["RobertaForSequenceClassification"]
    assert cfg["id2label"] == {str(i): n for i, n in enumerate(LABELS)}
    assert cfg["label2id"] == {n: i for i, n in enumerate(LABELS)}
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        dense = f.get_tensor("classifier.dense.weight")
    assert not [k for k in keys if "lora_" in k or "modules_to_save" in k or "original_module" in k]
    assert {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight"} <= keys
    # the linear head inside RoBERTa's tanh head: dense = eps * I with eps a power of two
    assert exported.scale == export_mod.EPS
    assert torch.equal(dense, torch.eye(dense.shape[0]) * export_mod.EPS)
    tokenizer_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_cfg["model_max_length"] == config.load("smoke").max_length
    assert not set(export_mod.LOAD_TIME_KEYS) & set(tokenizer_cfg)

    text = (out / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---\n")[1])
    adapter_meta = yaml.safe_load((runs["linear"] / "adapter" / "README.md").read_text().split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["base_model"] == "tiny-roberta" and meta["license"] == adapter_meta["license"] == "mit"
    assert meta["model-index"] == adapter_meta["model-index"]  # the adapter's measured metrics
    assert "peft" not in meta["tags"]
    assert "research and non-commercial use only" in text  # the data's terms, as on the adapter's card
    assert f"{export_mod.ATOL:g} + {export_mod.RTOL:g} x |logit|" in text
    assert exported.max_abs_diff <= export_mod.ATOL


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_pipeline_without_peft_gives_predicts_labels_and_scores(exported: export_mod.ExportResult,
                                                                runs: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh interpreter in which peft cannot be imported loads the checkpoint with ``pipeline``."""
    script = (
        "import json, sys\n"
        "sys.modules['peft'] = None  # import peft now raises ImportError\n"
        "try:\n"
        "    import peft\n"
        "    sys.exit('peft is still importable')\n"
        "except ImportError:\n"
        "    pass\n"
        "import transformers\n"
        "classify = transformers.pipeline('text-classification', model=sys.argv[1], top_k=None)\n"
        "rows = classify(json.loads(sys.argv[2]), truncation=True)\n"
        "assert sys.modules.get('peft') is None\n"
        "print(json.dumps(rows))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(exported.out_dir), json.dumps(TEXTS)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])

    assert main(["predict", "--adapter", str(runs["linear"] / "adapter"), "--json", *TEXTS]) == 0
    expected = json.loads(capsys.readouterr().out)
    for got, want in zip(rows, expected, strict=True):
        scores = {entry["label"]: entry["score"] for entry in got}
        assert set(scores) == set(LABELS)
        assert max(scores, key=scores.get) == want["label"]
        np.testing.assert_allclose([scores[n] for n in LABELS], [want["probabilities"][n] for n in LABELS],
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("head", ["default", "linear", "lora-dense"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_every_head_of_every_family_maps_onto_its_own_modules(kind: str, head: str, tmp_path: Path) -> None:
    """Trained-looking parameters (random LoRA B, random head), merged and re-expressed: ``default`` heads are
    copied bit for bit, ``linear`` and ``lora-dense`` to float32 rounding, far inside the export's tolerance."""
    tiny_config(kind).save_pretrained(tmp_path)
    cfg = config.from_dict({"model_name": str(tmp_path), "init": "random", "lora_r": 2, "lora_alpha": 4,
                            "lora_targets": "all-linear", "head": head})
    net = build_model(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.05 if "lora_B" in name else 1.0))
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 9, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    net.eval()
    with torch.no_grad():
        before = net(input_ids=ids, attention_mask=mask).logits
        merged = merge(net, cfg.method)
        reference = merged(input_ids=ids, attention_mask=mask).logits
        plain = export_mod.to_plain(merged, head)
        logits = plain(input_ids=ids, attention_mask=mask).logits
    assert type(plain).__name__.endswith("ForSequenceClassification") and type(plain).__module__.startswith(
        "transformers.models.")
    assert [plain.config.id2label[i] for i in range(4)] == list(LABELS)
    assert before.abs().max() > 1  # the head's output is not trivially small
    if head == "default":
        assert torch.equal(logits, reference)
    else:
        torch.testing.assert_close(logits, reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits, before, rtol=export_mod.RTOL, atol=export_mod.ATOL)


@pytest.mark.parametrize("method, extra", [("lora", {"lora_variant": "dora"}), ("pissa", {}), ("adalora", {}),
                                           ("vera", {"lora_r": 8}), ("loha", {}), ("ia3", {"lora_targets": "value"}),
                                           ("bitfit", {}), ("layernorm", {})])
def test_every_mergeable_method_exports_with_the_linear_head(method: str, extra: dict, tmp_path: Path) -> None:
    tiny_config("roberta").save_pretrained(tmp_path)
    cfg = config.from_dict({"model_name": str(tmp_path), "init": "random", "lora_r": 2, "lora_alpha": 4,
                            "lora_targets": "query,value", "head": "linear", "method": method, **extra})
    net = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)  # trained-looking: every adapter non-trivial
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 9, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    with torch.no_grad():
        before = net(input_ids=ids, attention_mask=mask).logits
        plain = export_mod.to_plain(merge(net, method), "linear")
        torch.testing.assert_close(plain(input_ids=ids, attention_mask=mask).logits, before, rtol=1e-5, atol=1e-5)


def test_the_tanh_scale_follows_the_encoders_feature_bound(tmp_path: Path) -> None:
    """Features that may exceed 256 (a large final LayerNorm gain) get a smaller eps, and stay exact."""
    tiny_config("bert").save_pretrained(tmp_path)
    cfg = config.from_dict({"model_name": str(tmp_path), "init": "random", "lora_r": 2, "lora_alpha": 4,
                            "lora_targets": "query", "head": "linear"})
    net = merge(build_model(cfg), "lora").eval()
    assert export_mod.identity_scale(net) == export_mod.EPS
    with torch.no_grad():
        net.bert.encoder.layer[-1].output.LayerNorm.weight.fill_(300.0)
    bound = export_mod.feature_bound(net)
    assert bound == pytest.approx(31 ** 0.5 * 300)  # sqrt(hidden - 1) * max|gain| (+ max|bias| = 0)
    eps = export_mod.identity_scale(net)
    assert eps < export_mod.EPS and eps * bound <= 2.0 ** -12 and np.log2(eps) == int(np.log2(eps))
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(export_mod.to_plain(net, "linear")(input_ids=ids).logits, net(input_ids=ids).logits,
                                   rtol=1e-6, atol=1e-5)


def test_prompt_tuning_is_refused_before_anything_is_written(runs: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plain"
    assert main(["export", "--adapter", str(runs["prompt"] / "adapter"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot export") and "'prompt' cannot be merged" in err
    assert "predict --adapter" in err and err.count("\n") == 1
    assert not out.exists() and leftovers(tmp_path) == []


def test_overwrite_replaces_only_an_earlier_export(runs: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    adapter = runs["linear"] / "adapter"
    out = tmp_path / "plain"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # not an export: refused, with or without --overwrite
        assert main(["export", "--adapter", str(adapter), "--out", str(out), *extra]) == 2
        assert capsys.readouterr().err.count("\n") == 1
        assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    for target in (adapter, adapter.parent):  # the adapter itself or its run directory: never, even with --overwrite
        assert main(["export", "--adapter", str(adapter), "--out", str(target), "--overwrite"]) == 2
        assert "would replace the adapter" in capsys.readouterr().err
    earlier = tmp_path / "earlier"
    assert main(["export", "--adapter", str(adapter), "--out", str(earlier)]) == 0
    assert main(["export", "--adapter", str(adapter), "--out", str(earlier)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", "--adapter", str(adapter), "--out", str(earlier), "--overwrite"]) == 0
    assert "self-check" in capsys.readouterr().out
    (earlier / "notes.txt").write_text("mine")  # a user's file beside an earlier export: kept, the export refused
    assert main(["export", "--adapter", str(adapter), "--out", str(earlier), "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (earlier / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_a_missing_adapter_is_the_adapter_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plain"
    assert main(["export", "--adapter", str(tmp_path / "none"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "adapter directory" in err and "does not exist" in err and "train --out RUN" in err
    assert not out.exists()


def test_a_failed_self_check_writes_nothing(runs: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = export_mod.pipeline_logits
    monkeypatch.setattr(export_mod, "pipeline_logits", lambda directory, texts: real(directory, texts) + 1e-3)
    out = tmp_path / "plain"
    with pytest.raises(export_mod.ExportError, match=r"self-check failed: .* differ from predict's by up to 0\.001"):
        export_mod.export(runs["linear"] / "adapter", out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_class_names_are_the_models_own_else_the_projects() -> None:
    from transformers import RobertaConfig

    assert export_mod.class_names(RobertaConfig(id2label={0: "negative", 1: "positive"})) == ("negative", "positive")
    assert export_mod.class_names(RobertaConfig(num_labels=len(LABELS))) == tuple(LABELS)  # LABEL_0...: no names
    with pytest.raises(export_mod.ExportError, match="3 classes but no class names.*set id2label"):
        export_mod.class_names(RobertaConfig(num_labels=3))
