"""Model: exact trainable counts (meta device, no network), heads, LoRA variants, budget checks, forward."""

from __future__ import annotations

import functools

import pytest
import torch

from lora_agnews.core import config
from lora_agnews.core.budget import (BudgetError, budget_table, check_budget, count_trainable, format_breakdown,
                                    format_budget_table, largest_rank, parameter_breakdown, rank_line)
from lora_agnews.core.build import build_model
from lora_agnews.core.encoders import ModelError, build_tokenizer
from lora_agnews.core.heads import FirstTokenPooler
from lora_agnews.core.precision import device_for, resolve_precision
from lora_agnews.core.config import Config, ConfigError

HIDDEN = 768
LAYERS = 12
QKV = 3 * LAYERS  # adapted modules for query,key,value in every layer
DEFAULT_HEAD = HIDDEN * HIDDEN + HIDDEN + HIDDEN * 4 + 4  # RoBERTa's dense + out_proj: 593,668
LINEAR_HEAD = HIDDEN * 4 + 4  # 3,076


@functools.lru_cache(maxsize=None)
def count(cfg: Config) -> dict:
    """Counts are pure functions of the config; each roberta-base meta build costs about a second."""
    return count_trainable(cfg)


def roberta(**changes) -> Config:
    values = {"model_name": "roberta-base", "init": "random", "lora_r": 7, "lora_alpha": 32,
              "lora_targets": "query,key,value", "head": "default", "budget": 1_000_000}
    return config.from_dict({**values, **changes})


def minilm(**changes) -> Config:
    return config.from_dict({"model_name": "sentence-transformers/all-MiniLM-L6-v2", "init": "random", **changes})


# --------------------------------------------------------------------------- exact counts
def test_starting_point_count_is_980740() -> None:
    b = count(roberta())
    assert b["total"] == 980_740
    assert b["head"] == DEFAULT_HEAD == 593_668
    assert b["lora"] == QKV * 7 * (HIDDEN + HIDDEN) == 387_072
    assert b["lora_by_target"] == {"key": 129_024, "query": 129_024, "value": 129_024}
    assert b["other"] == 0 and b["dora_magnitude"] == 0


def test_frozen_is_roberta_base_without_head() -> None:
    b = count(roberta())
    # roberta-base (RobertaModel without pooler) has 124,055,040 parameters; the head is trained,
    # PEFT's frozen copy of it is not counted.
    assert b["frozen"] == 124_055_040
    assert b["all_parameters"] == 124_055_040 + b["total"]


def test_linear_head_r18_count() -> None:
    b = count(roberta(lora_r=18, lora_alpha=36, head="linear"))
    assert b["head"] == LINEAR_HEAD
    assert b["total"] == 998_404 == LINEAR_HEAD + QKV * 18 * 2 * HIDDEN


def test_lora_dense_head_count() -> None:
    r = 7
    b = count(roberta(head="lora-dense"))
    assert b["head"] == LINEAR_HEAD
    assert b["lora_by_target"]["classifier.dense"] == r * (HIDDEN + HIDDEN)
    assert b["total"] == LINEAR_HEAD + r * (HIDDEN + HIDDEN) + QKV * r * 2 * HIDDEN == 400_900


def test_dora_adds_magnitude_vectors_only() -> None:
    plain, dora = count(roberta()), count(roberta(lora_variant="dora"))
    assert dora["dora_magnitude"] == QKV * HIDDEN  # one magnitude per output feature of each adapted module
    assert dora["total"] - plain["total"] == QKV * HIDDEN == 27_648
    assert count(roberta(lora_variant="rslora"))["total"] == plain["total"]  # rsLoRA only rescales


def test_lora_layers_restrict_layers() -> None:
    full, three = count(roberta()), count(roberta(lora_layers="0,5,11"))
    assert three["lora"] * LAYERS == full["lora"] * 3
    assert three["head"] == full["head"]
    with pytest.raises(ConfigError, match="layers 0..11"):
        count(roberta(lora_layers="12"))


def test_targets_change_count() -> None:
    qv = count(roberta(lora_targets="query,value"))
    assert qv["lora"] == 2 * LAYERS * 7 * 2 * HIDDEN
    dense = count(roberta(lora_targets="dense", head="linear", lora_r=1))
    # every 'dense' in the encoder: attention output 768->768, intermediate 768->3072, output 3072->768
    assert dense["lora"] == LAYERS * ((HIDDEN + HIDDEN) + (HIDDEN + 3072) + (3072 + HIDDEN))


def test_breakdown_groups_sum_to_total() -> None:
    for cfg in (roberta(), roberta(head="lora-dense"), roberta(lora_variant="dora"), config.load("smoke")):
        b = count(cfg)
        assert b["lora"] + b["head"] + b["other"] == b["total"]
        assert sum(b["lora_by_target"].values()) == b["lora"]
        assert b["all_parameters"] == b["total"] + b["frozen"]


def test_minilm_bert_counts() -> None:
    default = count(minilm())
    assert default["head"] == 384 * 4 + 4 == 1_540
    assert default["lora"] == 3 * 6 * 8 * (384 + 384)  # demo defaults: r=8 on q,k,v of 6 layers
    assert count(minilm(head="linear"))["total"] == default["total"]  # BERT's classifier is already linear
    dense = count(minilm(head="lora-dense"))
    assert dense["lora_by_target"]["pooler.dense"] == 8 * (384 + 384)
    assert dense["total"] == default["total"] + 8 * (384 + 384)


def test_format_breakdown_last_line() -> None:
    text = format_breakdown(count(roberta()), 1_000_000)
    assert text.splitlines()[-1] == "trainable_params: 980740"
    assert "98.1% of budget 1,000,000" in text


# --------------------------------------------------------------------------- budget
def test_check_budget_message() -> None:
    cfg = roberta(lora_r=8)
    b = count(cfg)
    assert b["total"] == DEFAULT_HEAD + QKV * 8 * 2 * HIDDEN == 1_036_036
    with pytest.raises(BudgetError) as info:
        check_budget(b, cfg)
    msg = str(info.value)
    assert "1,036,036" in msg and "1,000,000" in msg and "-p lora_r 7" in msg
    check_budget(count(roberta()), roberta())  # 980,740 fits: no error


def test_check_budget_when_no_rank_fits() -> None:
    cfg = roberta(budget=500_000)  # the default head alone is 593,668
    with pytest.raises(BudgetError, match="No rank fits"):
        check_budget(count(cfg), cfg)
    assert largest_rank(cfg) == 0


@pytest.mark.parametrize(("head", "expected"), [("default", 7), ("linear", 18)])
def test_largest_rank_is_exact(head: str, expected: int) -> None:
    cfg = roberta(head=head)
    r = largest_rank(cfg)
    assert r == expected
    assert count(cfg.replace(lora_r=r))["total"] <= cfg.budget < count(cfg.replace(lora_r=r + 1))["total"]


def test_rank_line_is_affine() -> None:
    cfg = roberta(head="lora-dense")
    fixed, per_rank = rank_line(cfg)
    assert (fixed, per_rank) == (LINEAR_HEAD, (QKV + 1) * 2 * HIDDEN)
    assert count(cfg.replace(lora_r=5))["total"] == fixed + 5 * per_rank
    assert largest_rank(cfg, budget=fixed + 3 * per_rank) == 3


def test_budget_table_rows() -> None:
    rows = budget_table(roberta(), ["query,value", "query,key,value"], ["default", "linear"])
    assert [(row["lora_targets"], row["head"]) for row in rows] == [
        ("query,value", "default"), ("query,value", "linear"), ("query,key,value", "default"), ("query,key,value", "linear")]
    for row in rows:
        assert row["total_at_max"] <= 1_000_000
        assert row["total_at_max"] + row["per_rank"] > 1_000_000
    assert rows[2]["max_rank"] == 7 and rows[3]["max_rank"] == 18
    text = format_budget_table(rows, 1_000_000)
    assert "budget: 1,000,000" in text and "998,404" in text


# --------------------------------------------------------------------------- built tiny models
@pytest.fixture(scope="module")
def smoke_tokenizer():
    return build_tokenizer(config.load("smoke"))


def tiny(cfg: Config, tokenizer):
    return build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)


def test_built_model_matches_meta_count(smoke_tokenizer) -> None:
    cfg = config.load("smoke")
    built = parameter_breakdown(tiny(cfg, smoke_tokenizer))
    assert built == count_trainable(cfg)
    assert built["lora_by_target"]["word_embeddings"] == cfg.lora_r * (len(smoke_tokenizer) + 64)
    assert built["total"] <= cfg.budget


@pytest.mark.parametrize("head", ["default", "linear", "lora-dense"])
def test_only_lora_and_head_train_and_forward_shape(smoke_tokenizer, head: str) -> None:
    cfg = config.load("smoke", {"head": head})
    net = tiny(cfg, smoke_tokenizer)
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    assert trainable
    for name in trainable:
        assert "lora_" in name or "modules_to_save" in name, name
    assert parameter_breakdown(net) == count_trainable(cfg)
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1], [0, 9, 10, 2, 1]])
    mask = (ids != smoke_tokenizer.pad_token_id).long()
    net.eval()
    with torch.no_grad():
        logits = net(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (3, 4)
    assert torch.isfinite(logits).all()


def test_bert_linear_head_forward() -> None:
    cfg = minilm(head="linear", lora_r=2)
    net = build_model(cfg)
    assert isinstance(net.base_model.model.bert.pooler, FirstTokenPooler)
    ids = torch.tensor([[101, 2023, 2003, 102], [101, 7592, 102, 0]])
    net.eval()
    with torch.no_grad():
        logits = net(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert logits.shape == (2, 4)
    assert parameter_breakdown(net) == count(cfg)


def test_seeded_build_is_reproducible(smoke_tokenizer) -> None:
    cfg = config.load("smoke")
    a, b = tiny(cfg, smoke_tokenizer), tiny(cfg, smoke_tokenizer)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name


# --------------------------------------------------------------------------- errors, devices
def test_unknown_model_offline_says_how_to_fix() -> None:
    cfg = roberta(model_name="no-such-org/no-such-model")
    with pytest.raises(ModelError) as info:
        count_trainable(cfg)
    msg = str(info.value)
    assert "no-such-org/no-such-model" in msg and "-p model_name /path/to/model" in msg


def test_device_and_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load("smoke", {"device": "cpu"})
    assert device_for(cfg).type == "cpu"
    assert resolve_precision(cfg) == "fp32"  # smoke pins fp32
    monkeypatch.setenv("LORA_AGNEWS_NO_BF16", "1")
    assert resolve_precision(cfg.replace(precision="auto")) == "fp32"
    assert resolve_precision(cfg.replace(precision="bf16")) == "bf16"
