"""LoRA placements by role and preset, and the three heads, for every supported encoder family.

Exact counts at base scale are built on the meta device (no weights, no network); the heads'
forward passes run on tiny random models of each family, written as config.json to a
temporary directory (so ``model_name`` is a local path and nothing is downloaded).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from lora_agnews.core import config
from lora_agnews.core.budget import count_trainable, largest_rank, parameter_breakdown
from lora_agnews.core.build import build_model
from lora_agnews.core.encoders import ModelError
from lora_agnews.core.families import ROLES, family_of, family_targets_regex, parse_targets, role_of
from lora_agnews import cli
from lora_agnews.core.config import Config, ConfigError

H, F, L = 768, 3072, 12  # base-scale hidden size, FFN size, layers
LABELS = 4
QKV_PER_RANK = L * 3 * (H + H)  # 55,296
ALL_LINEAR_PER_RANK = L * (4 * (H + H) + 2 * (H + F))  # 165,888
DEFAULT_HEAD = H * H + H + H * LABELS + LABELS  # dense + out_proj: 593,668
LINEAR_HEAD = H * LABELS + LABELS  # 3,076


@functools.lru_cache(maxsize=None)
def count(cfg: Config) -> dict:
    return count_trainable(cfg)


def base(name: str, **changes) -> Config:
    values = {"model_name": name, "init": "random", "lora_r": 7, "lora_alpha": 32, "lora_targets": "query,key,value",
              "head": "default", "budget": 1_000_000}
    return config.from_dict({**values, **changes})


# --------------------------------------------------------------------------- reading lora_targets
def test_presets_expand_to_roles() -> None:
    assert parse_targets(["attention"]).roles == ("query", "key", "value")
    assert parse_targets(["all-linear"]).roles == ROLES == (
        "query", "key", "value", "attn_out", "ffn_in", "ffn_out")
    mixed = parse_targets(["value", "attention", "ffn_out", "word_embeddings", "dense", "dense"])
    assert mixed.roles == ("value", "query", "key", "ffn_out")  # order kept, no repeats
    assert mixed.names == ("dense",) and mixed.embeddings


# --------------------------------------------------------------------------- exact counts, base scale (meta)
def test_arithmetic_behind_the_counts() -> None:
    assert QKV_PER_RANK == 55_296 and ALL_LINEAR_PER_RANK == 165_888
    assert 7 * QKV_PER_RANK + DEFAULT_HEAD == 980_740  # the seed's setting
    assert 18 * QKV_PER_RANK + LINEAR_HEAD == 998_404  # the paper's setting
    assert 6 * ALL_LINEAR_PER_RANK + LINEAR_HEAD == 998_404  # all-linear, r=6, linear head


def test_mpnet_base_seed_setting_is_980740() -> None:
    b = count(base("microsoft/mpnet-base"))
    assert b["total"] == 980_740 == count(base("roberta-base"))["total"]
    assert b["head"] == DEFAULT_HEAD  # MPNet's head is RoBERTa's: classifier.dense + classifier.out_proj
    assert b["lora_by_target"] == {"key": 129_024, "query": 129_024, "value": 129_024}  # attn.q/k/v, by role
    # mpnet-base without its (unused) pooler: embeddings (30,527 + 514 positions) + relative bias + 12 layers
    assert b["frozen"] == (30_527 + 514) * H + 2 * H + 32 * 12 + L * (4 * (H * H + H) + 2 * H * F + F + H + 4 * H)
    assert b["frozen"] == 108_895_872


def test_mpnet_base_paper_setting_is_998404() -> None:
    b = count(base("microsoft/mpnet-base", lora_r=18, lora_alpha=36, head="linear"))
    assert b["total"] == 998_404 == count(base("roberta-base", lora_r=18, lora_alpha=36, head="linear"))["total"]
    assert b["head"] == LINEAR_HEAD


def test_xlm_roberta_base_counts_as_roberta_base() -> None:
    """XLM-RoBERTa has roberta-base's modules and shape: the same trainable counts; only the frozen
    vocabulary differs (250,002 tokens instead of 50,265)."""
    for changes in ({}, {"lora_r": 18, "lora_alpha": 36, "head": "linear"}):
        xlm, rob = count(base("FacebookAI/xlm-roberta-base", **changes)), count(base("roberta-base", **changes))
        assert xlm["total"] == rob["total"] in (980_740, 998_404)
        assert xlm["lora_by_target"] == rob["lora_by_target"] and xlm["head"] == rob["head"]
        assert xlm["frozen"] - rob["frozen"] == (250_002 - 50_265) * H


@pytest.mark.parametrize("name", ["roberta-base", "microsoft/mpnet-base"])
def test_all_linear_r6_linear_head_is_998404(name: str) -> None:
    b = count(base(name, lora_r=6, lora_alpha=12, lora_targets="all-linear", head="linear"))
    assert b["total"] == 998_404
    assert b["lora_by_target"] == {"query": 6 * L * 2 * H, "key": 6 * L * 2 * H, "value": 6 * L * 2 * H,
                                   "attn_out": 6 * L * 2 * H, "ffn_in": 6 * L * (H + F), "ffn_out": 6 * L * (H + F)}
    assert largest_rank(base(name, lora_targets="all-linear", head="linear")) == 6


def test_presets_and_roles_count_as_their_expansion() -> None:
    assert count(base("roberta-base", lora_targets="attention")) == count(base("roberta-base"))
    roles = "query,key,value,attn_out,ffn_in,ffn_out"
    assert count(base("roberta-base", lora_targets="all-linear")) == count(base("roberta-base", lora_targets=roles))
    # the old module name 'dense' (every dense of the encoder layers) is attn_out + ffn_in + ffn_out, nothing more:
    # not the classifier's dense layer nor a pooler
    dense = count(base("roberta-base", lora_targets="dense", head="linear", lora_r=1))
    assert dense == count(base("roberta-base", lora_targets="attn_out,ffn_in,ffn_out", head="linear", lora_r=1))
    assert dense["lora"] == L * ((H + H) + 2 * (H + F))
    bert_dense = count(base("bert-base-uncased", lora_targets="dense", lora_r=1))
    assert "pooler.dense" not in bert_dense["lora_by_target"] and bert_dense["lora"] == dense["lora"]


def test_largest_ranks_on_mpnet_base() -> None:
    assert largest_rank(base("microsoft/mpnet-base")) == 7
    assert largest_rank(base("microsoft/mpnet-base", head="linear")) == 18


@pytest.mark.parametrize(("name", "default_head"), [
    ("bert-base-uncased", LINEAR_HEAD),  # BERT's default head: the linear classifier (its pooler is pretrained, frozen)
    ("google/electra-base-discriminator", DEFAULT_HEAD),
    ("microsoft/deberta-v3-base", DEFAULT_HEAD),  # context pooler dense + classifier
    ("distilbert-base-uncased", DEFAULT_HEAD)])  # pre_classifier + classifier
def test_other_families_at_base_scale(name: str, default_head: int) -> None:
    layers = 6 if name.startswith("distilbert") else L
    qkv = layers * 3 * 7 * (H + H)
    assert count(base(name))["total"] == qkv + default_head
    assert count(base(name, head="linear"))["total"] == qkv + LINEAR_HEAD
    dense = count(base(name, head="lora-dense"))
    assert dense["total"] == qkv + LINEAR_HEAD + 7 * (H + H)
    assert count(base(name, lora_targets="all-linear", lora_r=1, head="linear"))["lora"] == (
        layers * (4 * (H + H) + 2 * (H + F)))


def test_lora_layers_apply_to_roles() -> None:
    one = count(base("microsoft/mpnet-base", lora_targets="all-linear", lora_layers="0", head="linear", lora_r=1))
    assert one["lora"] == ALL_LINEAR_PER_RANK // L


# --------------------------------------------------------------------------- tiny models of every family
TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            max_position_embeddings=64)


def tiny_config(kind: str):
    import transformers as tf

    if kind == "roberta":
        return tf.RobertaConfig(**TINY, type_vocab_size=1, pad_token_id=1)
    if kind == "xlm-roberta":
        return tf.XLMRobertaConfig(**TINY, type_vocab_size=1, pad_token_id=1)
    if kind == "bert":
        return tf.BertConfig(**TINY)
    if kind == "mpnet":
        return tf.MPNetConfig(**TINY)
    if kind == "electra":
        return tf.ElectraConfig(**TINY, embedding_size=16)
    if kind == "deberta-v2":
        return tf.DebertaV2Config(**TINY, relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
                                  share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False)
    if kind == "distilbert":
        return tf.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=2, hidden_dim=48,
                                   max_position_embeddings=64)
    if kind == "albert":
        return tf.AlbertConfig(**TINY, embedding_size=16)
    raise KeyError(kind)


FAMILY_KINDS = ["roberta", "xlm-roberta", "bert", "mpnet", "electra", "deberta-v2", "distilbert"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-configs")
    dirs = {}
    for kind in [*FAMILY_KINDS, "albert"]:
        tiny_config(kind).save_pretrained(root / kind)
        dirs[kind] = root / kind
    return dirs


def tiny(tiny_dirs: dict[str, Path], kind: str, **changes) -> Config:
    values = {"model_name": str(tiny_dirs[kind]), "init": "random", "lora_r": 2, "lora_alpha": 4,
              "lora_targets": "query,key,value", "head": "default"}
    return config.from_dict({**values, **changes})


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_each_role_is_exactly_one_linear_per_layer(tiny_dirs: dict[str, Path], kind: str) -> None:
    from transformers import AutoModelForSequenceClassification

    cfg = tiny_config(kind)
    with torch.device("meta"):
        net = AutoModelForSequenceClassification.from_config(cfg)
    fam = family_of(cfg.model_type)
    linears = {n: m for n, m in net.named_modules() if isinstance(m, nn.Linear)}
    in_layers = {n for n in linears if re.match(fam.layer_prefix(), n)}
    chosen: dict[str, str] = {}
    for role in ROLES:
        hits = [n for n in linears if re.fullmatch(fam.role_pattern(role), n)]
        assert len(hits) == 2, (role, hits)  # one per layer, two layers
        for n in hits:
            assert n not in chosen, f"{n} is both {chosen[n]} and {role}"
            chosen[n] = role
            assert role_of(fam, n) == role
        shapes = {tuple(linears[n].weight.shape) for n in hits}
        expected = {"ffn_in": (48, 32), "ffn_out": (32, 48)}.get(role, (32, 32))
        assert shapes == {expected}, (role, shapes)
    assert set(chosen) == in_layers  # all-linear is every linear layer of the encoder layers, and only those
    regex = family_targets_regex(fam, ["all-linear"])
    assert {n for n in linears if re.fullmatch(regex, n)} == in_layers  # never a pooler or a head layer


def first_token_states(net, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inner = net.base_model.model
    return getattr(inner, inner.base_model_prefix)(input_ids=ids, attention_mask=mask)[0][:, 0]


@pytest.mark.parametrize("head", ["default", "linear", "lora-dense"])
@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_heads_work_for_every_family(tiny_dirs: dict[str, Path], kind: str, head: str) -> None:
    cfg = tiny(tiny_dirs, kind, head=head, lora_targets="all-linear")
    net = build_model(cfg)
    breakdown = parameter_breakdown(net)
    assert breakdown == count_trainable(cfg)  # the meta count is the built model's
    h, style = 32, family_of(net.config.model_type).head
    own_head = (h * 4 + 4) if style == "pooler" else (h * h + h + h * 4 + 4)
    assert breakdown["head"] == {"default": own_head, "linear": h * 4 + 4, "lora-dense": h * 4 + 4}[head]
    dense_lora = {k: v for k, v in breakdown["lora_by_target"].items() if k not in ROLES}
    assert list(dense_lora.values()) == ([2 * (h + h)] if head == "lora-dense" else [])  # the head's dense layer
    assert breakdown["lora"] == 2 * 2 * (4 * (h + h) + 2 * (h + 48)) + sum(dense_lora.values())
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert "lora_" in name or "modules_to_save" in name, name

    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 9, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    net.eval()
    with torch.no_grad():
        logits = net(input_ids=ids, attention_mask=mask).logits
        assert logits.shape == (2, 4) and torch.isfinite(logits).all()
        if head == "linear":  # exactly one linear layer on the first token's final hidden state
            head_params = {n: p for n, p in net.named_parameters() if p.requires_grad and "lora_" not in n}
            (w,), (b,) = ([p for n, p in head_params.items() if n.endswith(end)] for end in ("weight", "bias"))
            assert w.shape == (4, h) and b.shape == (4,)
            expected = first_token_states(net, ids, mask) @ w.T + b
            torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_unsupported_family_names_the_supported(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(ModelError) as info:
        count_trainable(tiny(tiny_dirs, "albert"))
    msg = str(info.value)
    assert "'albert'" in msg
    for name in ("RoBERTa", "BERT", "MPNet", "ELECTRA", "DeBERTa-v2", "DistilBERT"):
        assert name in msg


def test_a_target_that_matches_nothing_is_a_config_error(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        count_trainable(tiny(tiny_dirs, "mpnet", lora_targets="query,valeu"))
    msg = str(info.value)
    assert "'valeu'" in msg and "all-linear" in msg and "attn_out" in msg and "MPNet" in msg
    # a module name of the family still works as before: MPNet's attention output is 'o'
    assert count_trainable(tiny(tiny_dirs, "mpnet", lora_targets="o")) == count_trainable(
        tiny(tiny_dirs, "mpnet", lora_targets="attn_out"))


# --------------------------------------------------------------------------- the budget command
def test_budget_command_lists_presets(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["budget", "-p", "model_name", "roberta-base", "-p", "init", "random", "--heads", "default,linear",
            "--targets", "attention;all-linear"]
    assert cli.main(argv) == 0
    rows = {tuple(line.split()[:2]): line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    # targets, head, fixed, per rank, max r, total
    assert rows[("attention", "default")][2:] == ["593,668", "55,296", "7", "980,740"]
    assert rows[("attention", "linear")][2:] == ["3,076", "55,296", "18", "998,404"]
    assert rows[("all-linear", "default")][2:] == ["593,668", "165,888", "2", "925,444"]
    assert rows[("all-linear", "linear")][2:] == ["3,076", "165,888", "6", "998,404"]


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_every_family_trains_saves_and_reloads_in_a_fresh_process(tiny_dirs: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each family through the real training path (tiny random weights, all-linear LoRA, linear head, the
    smoke data), then a fresh interpreter reloads every adapter and reproduces the saved test logits."""
    import numpy as np

    from conftest import fresh_process_logits
    from lora_agnews.core.train import train

    monkeypatch.setenv("LORA_AGNEWS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORA_AGNEWS_CACHE", str(tmp_path / "cache"))
    runs = {}
    for kind in FAMILY_KINDS:
        cfg = config.load("smoke", {"model_name": str(tiny_dirs[kind]), "lora_targets": "all-linear", "head": "linear",
                                    "lora_r": 2, "lora_alpha": 4, "epochs": 1, "max_train_samples": 64,
                                    "max_val_samples": 16, "max_eval_samples": 32, "budget": 1_000_000,
                                    "max_length": 62})  # the tiny models have 64 positions
        metrics = train(cfg, tmp_path / kind)
        assert metrics["trainable_params"] == count_trainable(cfg)["total"], kind
        runs[kind] = tmp_path / kind
    got = fresh_process_logits({k: d / "adapter" for k, d in runs.items()}, tmp_path)
    for kind, run in runs.items():
        saved = np.load(run / "test_predictions.npz")["logits"]
        np.testing.assert_allclose(got[kind], saved, rtol=1e-4, atol=1e-4, err_msg=kind)
