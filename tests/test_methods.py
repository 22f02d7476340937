"""PEFT methods under the same exact accounting: each is chosen by ``method``, counted exactly (the
meta-device count equals the built model's trainable parameters), refused over budget before
training, saved, reloaded in a fresh process with the saved test logits, merged where it can be
(a clear error where it cannot), usable by ``predict``, and tabulated by ``budget --methods``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lora_agnews.core import config, methods
from lora_agnews.core.budget import BudgetError, count_trainable, largest_rank, local_vocab_size
from lora_agnews.core.build import MergeError, build_model, merge, size_limit
from lora_agnews.core.adapter import load_adapter, predict_logits_for_texts
from lora_agnews.core.card import read_model_card
from lora_agnews.core.paths import read_json
from lora_agnews.cli import main
from lora_agnews.core.dataset import load_splits
from conftest import fresh_process_logits

SHORT = {"epochs": 1, "max_train_samples": 64, "max_val_samples": 32, "max_eval_samples": 32,
         "lora_r": 4, "lora_alpha": 8}
LINEAR = {"lora_targets": "query,key,value"}  # methods PEFT implements for linear layers only
METHODS = {
    "lora": {"lora_variant": "dora"},
    "pissa": {},
    "olora": {},
    "adalora": LINEAR,
    "vera": {**LINEAR, "lora_r": 16},
    "loha": LINEAR,
    "lokr": {**LINEAR, "lora_r": 2},  # the tiny model's 64 x 64 weights factor as 8 x 8: r below 4
    "ia3": {"lora_targets": "key,value,ffn_out"},
    "bitfit": {},
    "layernorm": {},
    "prompt": {"prompt_tokens": 4},
}


def method_config(method: str, **extra) -> config.Config:
    return config.load("smoke", {**SHORT, "method": method, **METHODS[method], **extra})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short smoke training per method (about a second or two each on one core)."""
    from lora_agnews.core.train import train

    root = tmp_path_factory.mktemp("methods")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORA_AGNEWS_RESULTS", str(root / "results"))
        mp.setenv("LORA_AGNEWS_CACHE", str(root / "cache"))
        for method in METHODS:
            train(method_config(method), root / method)
            out[method] = root / method
    return out


def test_run_key_omits_new_keys_at_their_defaults() -> None:
    key = config.load("demo").run_key()
    assert "method" not in key and "prompt_tokens" not in key and "adalora_target_r" not in key
    assert config.load("demo", {"method": "vera"}).run_key()["method"] == "vera"
    assert config.load("demo", {"method": "prompt", "prompt_tokens": 8}).run_key()["prompt_tokens"] == 8


def test_bad_combinations_are_config_errors() -> None:
    with pytest.raises(config.ConfigError, match="applies to LoRA"):
        config.load("smoke", {"method": "vera", "lora_variant": "dora"})
    with pytest.raises(config.ConfigError, match="word_embeddings"):
        count_trainable(config.load("smoke", {"method": "vera"}))
    with pytest.raises(config.ConfigError, match="lora-dense"):
        count_trainable(config.load("smoke", {"method": "bitfit", "head": "lora-dense"}))
    with pytest.raises(config.ConfigError, match="method"):
        config.load("smoke", {"method": "lokra"})


@pytest.mark.parametrize("method", list(METHODS))
def test_count_is_exact_and_recorded(method: str, runs: dict[str, Path]) -> None:
    cfg = method_config(method)
    counted = count_trainable(cfg)
    built = build_model(cfg, vocab_size=local_vocab_size(cfg.data, cfg.task), pad_token_id=1)
    assert counted["total"] == sum(p.numel() for p in built.parameters() if p.requires_grad)
    assert counted["total"] == counted["adapter"] + counted["head"] and counted["other"] == 0
    assert counted["adapter"] > 0 and counted["head"] > 0
    metrics = read_json(runs[method] / "metrics.json")
    assert metrics["trainable_params"] == counted["total"]
    assert read_json(runs[method] / "adapter" / "lora_agnews_config.json")["config"]["method"] == method


def test_sizes_follow_their_formulas() -> None:
    """Per adapted 64x64 module of the tiny model (hidden 64, 2 layers, 3 modules per layer: 6 in all)."""
    def adapter(method: str, **extra) -> int:
        return count_trainable(method_config(method, **extra))["adapter"]

    assert adapter("adalora") == 6 * 4 * (64 + 64 + 1)
    assert adapter("vera") == 6 * (64 + 16)
    assert adapter("loha") == 6 * 2 * 4 * (64 + 64)
    assert adapter("lokr") == 6 * (8 * 8 + 2 * (8 + 8))  # w1 8 x 8 in full, w2 = (8 x r)(r x 8) at r=2
    assert adapter("ia3") == 2 * (64 + 64 + 128)  # key, value: outputs; ffn_out: its 128 inputs
    assert adapter("layernorm") == 5 * 2 * 64
    assert adapter("prompt") == 4 * 64
    assert adapter("pissa") == adapter("olora") == adapter("lora", lora_variant="lora")


@pytest.mark.parametrize("method", list(METHODS))
def test_over_budget_is_refused_before_training(method: str, tmp_path: Path) -> None:
    from lora_agnews.core.train import train

    with pytest.raises(BudgetError, match="Refused before training"):
        train(method_config(method, budget=1000), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", list(METHODS))
def test_merge_or_clear_error(method: str, runs: dict[str, Path]) -> None:
    loaded, tokenizer, cfg = load_adapter(runs[method] / "adapter")
    texts = load_splits(cfg).test["text"].tolist()[:16]
    before = predict_logits_for_texts(loaded, tokenizer, cfg, texts)
    if method == "prompt":
        with pytest.raises(MergeError, match="'prompt' cannot be merged"):
            merge(loaded, method)
        return
    merged = merge(loaded, method)
    assert not hasattr(merged, "peft_config")
    np.testing.assert_allclose(predict_logits_for_texts(merged, tokenizer, cfg, texts), before, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_fresh_process_reload_reproduces_test_logits_for_every_method(runs: dict[str, Path], tmp_path: Path) -> None:
    """One fresh interpreter loads every adapter and scores the test split; the logits equal the saved ones."""
    got = fresh_process_logits({m: d / "adapter" for m, d in runs.items()}, tmp_path)
    for method, run in runs.items():
        saved = np.load(run / "test_predictions.npz")["logits"]
        np.testing.assert_allclose(got[method], saved, rtol=1e-4, atol=1e-4, err_msg=method)


@pytest.mark.parametrize("method", ["bitfit", "prompt", "vera"])
def test_predict_command_works(method: str, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--adapter", str(runs[method] / "adapter"), "--json", "Stocks rally", "Cup final"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)


def test_budget_command_lists_methods(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "--profile", "smoke", "--methods", "-p", "lora_targets", "query,key,value",
                 "--heads", "default,linear"]) == 0
    out = capsys.readouterr().out
    for method in METHODS:
        assert f"\n{method} " in out
    rows = out.splitlines()
    loha = next(r for r in rows if r.startswith("loha ") and " linear " in r)
    size = int(loha.split()[4])
    cfg = config.load("smoke", {"method": "loha", "lora_targets": "query,key,value", "head": "linear"})
    assert count_trainable(cfg.replace(lora_r=size))["total"] <= cfg.budget
    assert count_trainable(cfg.replace(lora_r=size + 1))["total"] > cfg.budget
    vera = next(r for r in rows if r.startswith("vera ") and " linear " in r)
    assert vera.split()[4] == "64*", "VeRA's rank stops at the hidden size, far below what the budget allows"


def test_adalora_allocates_ranks_during_training(runs: dict[str, Path]) -> None:
    """The callback ran PEFT's rank allocation: pruned singular values are saved as zeros, at the initial rank."""
    from safetensors import safe_open

    with safe_open(str(runs["adalora"] / "adapter" / "adapter_model.safetensors"), "pt") as f:
        values = [f.get_tensor(k) for k in f.keys() if ".lora_E" in k]
    assert values and all(v.shape[0] == 4 for v in values)
    kept = sum(int((v != 0).sum()) for v in values)
    assert 0 < kept < 4 * len(values)
    assert read_json(runs["adalora"] / "adapter" / "adapter_config.json")["rank_pattern"] is None


def test_sizes_have_the_methods_own_limits() -> None:
    with pytest.raises(config.ConfigError, match="at most 64"):
        count_trainable(method_config("pissa", lora_r=65))
    with pytest.raises(config.ConfigError, match="prompt_tokens"):
        count_trainable(method_config("prompt", prompt_tokens=10_000))
    with pytest.raises(config.ConfigError, match="at most 3.*w2 in full"):
        count_trainable(method_config("lokr", lora_r=4))
    assert largest_rank(method_config("lokr", head="linear", budget=10**7)) == 3
    big = method_config("olora", head="linear", budget=10**7)
    assert largest_rank(big) == 64
    assert largest_rank(method_config("ia3")) == 0  # size-less


@pytest.mark.parametrize("method, targets, size, total", [
    ("pissa", "attention", 18, 998_404),
    ("adalora", "attention", 18, 999_052),
    ("adalora", "all-linear", 6, 998_836),
    ("vera", "attention", 768, 58_372),
    ("vera", "all-linear", 768, 141_316),
    ("loha", "all-linear", 3, 998_404),
    ("lokr", "attention", 15, 58_372),
    ("lokr", "all-linear", 15, 139_012),
    ("ia3", "all-linear", 0, 113_668),
    ("bitfit", "attention", 0, 105_220),
    ("layernorm", "attention", 0, 41_476),
    ("prompt", "attention", 384, 297_988),
])
def test_readme_counts_for_roberta_base(method: str, targets: str, size: int, total: int) -> None:
    """The guide's table (book/guide/counting.md; roberta-base, linear head, largest size within 1,000,000)."""
    cfg = config.from_dict({"model_name": "roberta-base", "init": "random", "head": "linear", "method": method,
                            "lora_targets": targets, "budget": 1_000_000})
    key = methods.METHODS[method].size_key
    if key:
        cfg = cfg.replace(**{key: size})
        assert largest_rank(cfg) == size
    assert count_trainable(cfg)["total"] == total


@pytest.mark.parametrize("method", ["prompt", "bitfit", "adalora"])
def test_model_card_names_the_method(method: str, runs: dict[str, Path]) -> None:

    card = (runs[method] / "adapter" / "README.md").read_text(encoding="utf-8")
    meta = read_model_card(runs[method] / "adapter")
    assert method in meta["tags"]
    assert meta["library_name"] == ("transformers" if method == "bitfit" else "peft")
    title = {"prompt": "Prompt tuning", "bitfit": "BitFit", "adalora": "AdaLoRA"}[method]
    assert f"# {title} adapter" in card and "LoRA (r=" not in card


def test_bitfit_and_layernorm_honour_lora_layers() -> None:
    for method, per_layer in (("bitfit", 3 * 64 + 64 + 128 + 64 + 2 * 64), ("layernorm", 2 * 2 * 64)):
        one = count_trainable(method_config(method, lora_layers="1"))
        assert one["adapter"] == per_layer, method


def test_run_names_and_baseline() -> None:
    from lora_agnews.studies.experiments import baseline_config, run_name

    lora = config.load("smoke")
    assert run_name(lora) == "r8-query+key+value+word_embeddings-default"  # unchanged for LoRA
    assert run_name(method_config("vera")).startswith("vera-r16-")
    assert run_name(method_config("prompt")).startswith("prompt4-")
    assert baseline_config(method_config("vera")).method == "lora"
    prompt = method_config("prompt")
    assert baseline_config(prompt) == baseline_config(prompt.replace(method="lora", prompt_tokens=20))


@pytest.mark.parametrize("model_type, limit", [("mpnet", 10), ("roberta", 10), ("bert", 12)])
def test_prompt_limit_leaves_room_for_the_padding_offset(model_type: str, limit: int) -> None:
    """MPNet, like RoBERTa, numbers positions from padding_idx + 1: prompt + text must fit after the offset."""
    import torch
    from types import SimpleNamespace

    from transformers import MPNetConfig
    from transformers.models.mpnet.modeling_mpnet import MPNetEmbeddings

    model_cfg = SimpleNamespace(model_type=model_type, pad_token_id=1, max_position_embeddings=20, hidden_size=8)
    cfg = config.from_dict({"model_name": "roberta-base", "init": "random", "method": "prompt", "max_length": 8})
    assert size_limit(cfg, model_cfg) == limit
    if model_type == "mpnet":  # the real embeddings: the limit fits, one token more overruns the table
        emb = MPNetEmbeddings(MPNetConfig(vocab_size=30, hidden_size=8, max_position_embeddings=20, pad_token_id=1))
        assert emb(inputs_embeds=torch.zeros(1, limit + 8, 8)).shape == (1, limit + 8, 8)
        with pytest.raises(IndexError):
            emb(inputs_embeds=torch.zeros(1, limit + 9, 8))


def test_every_registry_entry_names_a_real_key_limit_and_title() -> None:
    """An entry's size key is a configuration key, its limit bounds a size it has, its display name is its own."""
    for name, method in methods.METHODS.items():
        assert method.name == name
        assert method.size_key is None or method.size_key in config.keys()
        assert method.limit is None or method.size_key is not None, f"{name}: a limit on a method without a size"
        assert method.peft is not None or method.base_suffix, f"{name}: a hand-written method trains base parameters"
    titles = [m.title.lower() for m in methods.METHODS.values()]
    assert len(set(titles)) == len(titles)
