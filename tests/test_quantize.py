"""QLoRA: a quantized frozen encoder (bitsandbytes NF4 / FP4 / int8) under full-precision adapters.

On the smoke profile: quantized training learns, the counts are those of full precision, the base's bytes are
what the formula says, the adapter reloads in a fresh process with the saved test logits, merging dequantizes
and agrees with the quantized model within a stated tolerance, and every refusal comes before anything is
written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lora_agnews.core import config
from lora_agnews.core.budget import count_trainable, parameter_breakdown
from lora_agnews.core.quantize import (_linear8bit, _probe, base_bytes, check_layout, estimated_base_bytes, is_quantized,
                                      is_repacked, quantize_model, require_quantization, weight_bytes)
from lora_agnews.studies import quantize_study
from lora_agnews.core.paths import read_json
from lora_agnews.core.config import ConfigError
from lora_agnews.core.methods import METHODS
from conftest import fresh_process_logits

bnb = pytest.importorskip("bitsandbytes")  # a pinned dependency: present wherever the project is installed

SHORT: dict = {}  # the smoke recipe itself (576 rows, 5 epochs: about 8 s a run); shorter runs do not learn reliably
LINEAR = "query,key,value"


def smoke(**extra) -> config.Config:
    return config.load("smoke", {**SHORT, **extra})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The smoke run on an NF4 and on an int8 base (about 8 s each)."""
    from conftest import outputs_under
    from lora_agnews.core.train import train

    root = tmp_path_factory.mktemp("quantize")
    out = {}
    with outputs_under(root):
        for scheme in ("nf4", "int8"):
            train(smoke(quantize=scheme), root / scheme)
            out[scheme] = root / scheme
    return out


# --------------------------------------------------------------------------- configuration and refusals
def test_quantize_keys_are_validated_and_left_out_of_old_run_keys() -> None:
    assert "quantize" not in smoke().run_key() and "quantize_double" not in smoke().run_key()
    assert smoke(quantize="nf4").run_key()["quantize"] == "nf4"
    with pytest.raises(ConfigError, match="quantize.*none, nf4, fp4, int8"):
        smoke(quantize="nf2")
    with pytest.raises(ConfigError, match="quantize_double.*nf4"):
        smoke(quantize="int8", quantize_double=True)


@pytest.mark.parametrize("method", sorted(name for name, m in METHODS.items() if m.not_on_quantized))
def test_methods_that_need_full_precision_weights_are_refused_by_name(method: str, tmp_path: Path) -> None:
    from lora_agnews.core.train import train

    cfg = smoke(method=method, quantize="nf4", lora_targets=LINEAR)
    with pytest.raises(ConfigError, match=rf"method '{method}' cannot train on a quantized base") as err:
        train(cfg, tmp_path / "run")
    assert "-p quantize none" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_missing_bitsandbytes_is_a_clear_error_before_anything_is_written(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from lora_agnews.core.train import train

    _probe.cache_clear()
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as where it is not installed
    try:
        with pytest.raises(ConfigError, match=r"pip install bitsandbytes==0\.50\.2"):
            train(smoke(quantize="nf4"), tmp_path / "run")
    finally:
        _probe.cache_clear()
    assert not (tmp_path / "run").exists()
    train_none = smoke()  # quantize none never needs it
    require_quantization(train_none)


def test_cli_refusal_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from lora_agnews.cli import main

    code = main(["train", "--profile", "smoke", "-p", "method", "pissa", "-p", "quantize", "int8",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "PiSSA" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- what is quantized, and its bytes
def _plain_base(cfg: config.Config):
    from lora_agnews.core.encoders import load_base
    from lora_agnews.core.heads import apply_head

    torch.manual_seed(0)
    base = load_base(cfg, 1000, 1)
    apply_head(base, cfg.head)
    for p in base.parameters():
        p.requires_grad_(False)
    return base


@pytest.mark.parametrize("scheme,double", [("nf4", False), ("nf4", True), ("fp4", False), ("int8", False)])
def test_the_encoder_linear_layers_are_quantized_and_the_head_is_not(scheme: str, double: bool) -> None:
    cfg = smoke(quantize=scheme, quantize_double=double)
    expected_bytes = estimated_base_bytes(_plain_base(cfg), cfg)  # from shapes only
    base = quantize_model(_plain_base(cfg), cfg)
    kinds = {name: type(m).__name__ for name, m in base.named_modules()}
    encoder_linear = [n for n in kinds if n.startswith("roberta.encoder.") and n.endswith(("query", "dense"))]
    assert encoder_linear and all(kinds[n] in ("Linear4bit", "Linear8bitLt") for n in encoder_linear)
    assert type(base.classifier.dense) is nn.Linear and type(base.classifier.out_proj) is nn.Linear
    assert type(base.roberta.embeddings.word_embeddings) is nn.Embedding
    assert base.classifier.dense.weight.dtype == torch.float32
    measured = base_bytes(base)
    assert measured == expected_bytes  # the formula is bitsandbytes' storage, byte for byte
    base(input_ids=torch.randint(3, 900, (2, 8)))  # an 8-bit layer moves its scales into its state on first use
    assert base_bytes(base) == measured
    assert measured["base_bytes"] < measured["base_bytes_fp32"]
    assert measured["base_bytes_fp32"] == base_bytes(_plain_base(cfg))["base_bytes"]


@pytest.fixture()
def cpu_inference_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every 4-bit layer built from now on believe the CPU has AVX512-BF16 (bitsandbytes' repacking path)."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)


@pytest.mark.parametrize("double", [False, True])
def test_evaluating_between_steps_leaves_the_4bit_base_as_quantized(double: bool, cpu_inference_layout: None) -> None:
    """An eval pass in the middle of training changes neither the base's weights nor the gradient it passes on.

    bitsandbytes repacks a 4-bit weight in place on a CPU with AVX512-BF16 when the layer runs in eval mode
    (scales rounded to bfloat16, an inference kernel without backward); the fixture forces that path on every
    CPU, so this guards machines that have the instructions and machines that lack them alike.
    """
    from peft.utils.integrations import dequantize_bnb_weight

    base = quantize_model(_plain_base(smoke(quantize="nf4", quantize_double=double)), smoke(quantize="nf4"))
    layers = [m for m in base.modules() if type(m).__name__ == "Linear4bit"]
    weights = [dequantize_bnb_weight(m.weight).clone() for m in layers]
    layer = layers[0]
    x = torch.randn(4, layer.in_features)

    def train_step() -> tuple[torch.Tensor, torch.Tensor]:
        layer.train()
        inp = x.clone().requires_grad_(True)
        out = layer(inp)
        out.square().sum().backward()
        assert inp.grad is not None, "no gradient reached the layer's input"
        return out.detach(), inp.grad

    before = train_step()
    base.eval()
    with torch.no_grad():
        base(input_ids=torch.randint(3, 900, (2, 8)))
    base.state_dict()  # what a checkpoint save does between evaluation and the next step
    after = train_step()
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert not any(is_repacked(m) for m in layers)
    for m, w in zip(layers, weights):
        torch.testing.assert_close(dequantize_bnb_weight(m.weight), w, rtol=0, atol=0)
    check_layout(base)


@pytest.mark.parametrize("training", [False, True])
def test_an_int8_layer_keeps_its_bias_whatever_dtype_it_saw(training: bool) -> None:
    """A bfloat16 pass (autocast) must not round the frozen bias for the float32 passes that follow.

    bitsandbytes' own layer rewrites its bias in place to the input's dtype, so a model's numbers depended on
    the order of its passes; the project's layer casts a copy per call.
    """
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    with torch.no_grad():
        linear.bias.add_(1e-3 * torch.randn(16) + 0.3)  # values that bfloat16 cannot hold exactly
    assert not torch.equal(linear.bias.to(torch.bfloat16).float(), linear.bias)
    fresh, seasoned = (_linear8bit(linear, __import__("bitsandbytes")) for _ in range(2))
    fresh.train(training), seasoned.train(training)
    x = torch.randn(3, 64)
    seasoned(x.to(torch.bfloat16))
    assert torch.equal(seasoned.bias, linear.bias) and seasoned.bias.dtype == torch.float32
    assert torch.equal(seasoned(x), fresh(x))


def test_a_repacked_base_is_refused() -> None:
    """A model whose 4-bit layers bitsandbytes repacked cannot be saved or scored as the run's model."""
    base = quantize_model(_plain_base(smoke(quantize="nf4")), smoke(quantize="nf4"))
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    layer = next(m for m in base.modules() if type(m).__name__ == "Linear4bit")
    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu(layer.weight.data,
                                                                                 layer.weight.quant_state)
    with pytest.raises(RuntimeError, match="repacked"):
        check_layout(base)


def test_weight_bytes_formula() -> None:
    # 768 x 768 in NF4: 294,912 packed bytes + 9,216 float32 scales + the 16-entry code
    assert weight_bytes(768, 768, "nf4") == 294_912 + 4 * 9_216 + 64
    assert weight_bytes(768, 768, "int8") == 589_824 + 4 * 768
    assert weight_bytes(768, 768, "nf4", double=True) < weight_bytes(768, 768, "nf4")


@pytest.mark.parametrize("method,extra", [("lora", {}), ("lora", {"lora_variant": "dora"}),
                                          ("adalora", {"lora_targets": LINEAR}), ("vera", {"lora_targets": LINEAR}),
                                          ("ia3", {"lora_targets": "key,value,ffn_out"}), ("bitfit", {}),
                                          ("layernorm", {}), ("prompt", {"prompt_tokens": 4})])
def test_trainable_counts_do_not_change_with_quantisation(method: str, extra: dict) -> None:
    from lora_agnews.core.build import build_model

    plain = smoke(method=method, **extra)
    quantized = plain.replace(quantize="nf4")
    built = parameter_breakdown(build_model(quantized, vocab_size=1000, pad_token_id=1))
    reference = parameter_breakdown(build_model(plain, vocab_size=1000, pad_token_id=1))
    for key in ("total", "adapter", "head", "frozen", "lora_by_target"):
        assert built[key] == reference[key], key
    assert built["base_bytes"] < reference["base_bytes"] == built["base_bytes_fp32"]
    counted = count_trainable(quantized, vocab_size=1000)  # on the meta device: from shapes
    assert (counted["base_bytes"], counted["base_bytes_fp32"]) == (built["base_bytes"], built["base_bytes_fp32"])


@pytest.mark.slow  # two roberta-base-sized models built and quantized (about 10 s each)
@pytest.mark.parametrize("setting,total", [({"lora_r": 7, "lora_alpha": 32, "head": "default"}, 980_740), ({}, 998_404)])
def test_roberta_base_counts_are_unchanged_by_nf4(setting: dict, total: int) -> None:
    """The starting point's setting and the paper setting on roberta-base's shape, built for real and quantized."""
    from lora_agnews.core.build import build_model

    cfg = config.load("paper", {"init": "random", "quantize": "nf4", **setting})
    model = build_model(cfg, vocab_size=50_265, pad_token_id=1)
    assert is_quantized(model)
    built = parameter_breakdown(model)
    counted = count_trainable(cfg)
    assert built["total"] == counted["total"] == total
    assert built["base_bytes"] == counted["base_bytes"] < 0.45 * built["base_bytes_fp32"]


def test_count_command_reports_the_quantized_base(capsys: pytest.CaptureFixture[str]) -> None:
    from lora_agnews.cli import main

    assert main(["params", "--profile", "smoke", "-p", "quantize", "nf4"]) == 0
    out = capsys.readouterr().out
    assert "frozen base (nf4)" in out and "MiB" in out


# --------------------------------------------------------------------------- training, reloading, merging
@pytest.mark.slow  # trains (the module's runs: about 20 s in all): `make test-slow`
def test_quantized_training_learns(trained: dict[str, Path]) -> None:
    for scheme in ("nf4", "int8"):
        metrics = read_json(trained[scheme] / "metrics.json")
        history = read_json(trained[scheme] / "history.json")
        losses = [h["loss"] for h in history if "loss" in h]
        assert losses[-1] < 0.8 * losses[0], (scheme, losses)
        assert metrics["accuracy"] > 0.6, scheme  # 4 balanced classes: chance is 0.25 (full precision: 0.80)
        assert metrics["config"]["quantize"] == scheme
        bd = metrics["parameter_breakdown"]
        assert bd["base_bytes"] < bd["base_bytes_fp32"]
        assert metrics["process_peak_rss_bytes"] > 0
    none = count_trainable(smoke())
    assert none["base_bytes"] == none["base_bytes_fp32"]
    assert read_json(trained["nf4"] / "metrics.json")["trainable_params"] == none["total"]


@pytest.mark.slow  # trains (the module's runs: about 20 s in all): `make test-slow`
def test_the_saved_adapter_records_the_quantized_base(trained: dict[str, Path]) -> None:
    saved = json.loads((trained["nf4"] / "adapter" / "lora_agnews_config.json").read_text())
    assert saved["config"]["quantize"] == "nf4"
    card = (trained["nf4"] / "adapter" / "README.md").read_text()
    assert "NF4" in card


@pytest.mark.slow
def test_fresh_process_reload_rebuilds_the_quantized_base(trained: dict[str, Path], tmp_path: Path) -> None:
    got = fresh_process_logits({s: trained[s] / "adapter" for s in ("nf4", "int8")}, tmp_path)
    for scheme, logits in got.items():
        with np.load(trained[scheme] / "test_predictions.npz") as saved:
            np.testing.assert_allclose(logits, saved["logits"], atol=1e-4, rtol=1e-4, err_msg=scheme)


@pytest.mark.slow  # uses the trained runs
@pytest.mark.parametrize("scheme,share", [("nf4", 1e-5), ("int8", 0.05)])
def test_merging_dequantizes_and_agrees_within_tolerance(scheme: str, share: float,
                                                        trained: dict[str, Path]) -> None:
    """The stated tolerance, as a share of the largest logit: NF4 computes with the dequantized weights, so the
    merge agrees to float rounding (1e-5); int8 also rounds the activations (float16, then 8 bits per row), so
    the full-precision merge differs by up to 5% of the logits' range."""
    from lora_agnews.core.adapter import load_adapter, predict_logits_for_texts
    from lora_agnews.core.dataset import load_splits
    from lora_agnews.core.build import merge

    model, tokenizer, cfg = load_adapter(trained[scheme] / "adapter")
    texts = load_splits(cfg).test["text"].tolist()
    quantized = predict_logits_for_texts(model, tokenizer, cfg, texts)
    merged = merge(model, cfg.method)
    assert not is_quantized(merged)
    assert not hasattr(merged, "peft_config")
    full = predict_logits_for_texts(merged, tokenizer, cfg, texts)
    assert np.abs(full - quantized).max() < share * np.abs(quantized).max()
    assert (full.argmax(axis=1) == quantized.argmax(axis=1)).mean() >= 0.95


@pytest.mark.slow  # trains (the module's runs: about 20 s in all): `make test-slow`
def test_export_writes_a_float32_checkpoint_of_a_quantized_adapter(trained: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from lora_agnews.core.export import export

    result = export(trained["int8"] / "adapter", tmp_path / "plain")
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "plain"))
    assert not is_quantized(plain)
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
    assert result.max_abs_diff <= 1e-3


# --------------------------------------------------------------------------- the study
@pytest.mark.slow  # trains (the module's runs: about 20 s in all): `make test-slow`
def test_study_pairs_each_quantized_base_with_full_precision(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """On the smoke recipe, in this process (isolate False keeps it fast; the pipeline runs it isolated)."""
    cfg = smoke(quantize_schemes="nf4,none", quantize_seeds=2, epochs=2, max_train_samples=96)
    result = quantize_study.run_study(cfg, isolate=False)
    assert result["settings"]["schemes"] == ["none", "nf4"]
    assert [(r["scheme"], r["seed"]) for r in result["runs"]] == [("none", 42), ("none", 43), ("nf4", 42), ("nf4", 43)]
    (comp,) = result["comparisons"]
    accs = {(r["scheme"], r["seed"]): r["accuracy"] for r in result["runs"]}
    expected = np.mean([accs["nf4", s] - accs["none", s] for s in (42, 43)])
    assert comp["mean_difference"] == pytest.approx(expected)
    assert comp["bootstrap_ci"][0] <= comp["mean_difference"] <= comp["bootstrap_ci"][1]
    assert len(comp["mcnemar_per_seed"]) == 2
    monkeypatch.setattr(quantize_study, "run_study", lambda cfg: result)  # the command prints the study's table
    from lora_agnews.cli import main

    assert main(["quantization", "--profile", "smoke"]) == 0
    assert "NF4" in capsys.readouterr().out.splitlines()[-2]  # the table's last row
    summary = quantize_study.summary_frame(result)
    assert list(summary["scheme"]) == ["none", "nf4"]
    assert summary.loc[1, "base_mib"] < summary.loc[0, "base_mib"]
    text = quantize_study.sentence(result)
    assert "NF4 (4-bit)" in text and "less" in text
    macros = quantize_study.macros(result)
    assert macros["QuantNfourDifference"] == f"{100 * comp['mean_difference']:+.2f}"
    assert r"\toprule" in quantize_study.table(result).latex()
    from lora_agnews.reporting import plots

    plots.close(plots.quantization(quantize_study.runs_frame(result), summary))


def test_study_refuses_unknown_schemes() -> None:
    with pytest.raises(ConfigError, match="quantize_schemes.*'nf3'"):
        quantize_study.schemes(smoke(quantize_schemes="none,nf3"))


def test_study_overrides_rebuild_the_configuration() -> None:
    from lora_agnews.cli import build_parser, load_config

    cfg = smoke(quantize="int8", seed=43, epochs=2.5)
    args = build_parser().parse_args(["train", "--profile", "smoke", *quantize_study.overrides(cfg), "--out", "x"])
    assert load_config(args) == cfg


# --------------------------------------------------------------------------- a real pretrained encoder
@pytest.mark.slow  # two demo trainings on MiniLM (about a minute each on 2 cores) and a fresh process
def test_a_pretrained_nf4_run_is_what_its_adapter_gives_in_a_fresh_process(
        tmp_path: Path, cpu_inference_layout: None) -> None:
    """The demo encoder on an NF4 base, evaluated between steps: the recorded test logits are the reloaded adapter's.

    The tiny random smoke model cannot show a corrupted base (its accuracy barely depends on the base); a
    pretrained encoder does: before the fix this run recorded 62% while its adapter scored 83% when reloaded.
    Full precision is trained beside it, so an NF4 run that learns far less than it is caught too.
    """
    import subprocess
    import sys

    from lora_agnews.core.train import train

    short = {"max_train_samples": 160, "epochs": 1, "evals_per_epoch": 3, "batch_size": 16}
    metrics = {scheme: train(config.load("demo", {**short, "quantize": scheme}), tmp_path / scheme)
               for scheme in ("none", "nf4")}
    script = ("import sys, numpy as np\nfrom lora_agnews.core.score import rescore\n"
              "np.save(sys.argv[2], rescore(sys.argv[1]).logits)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nf4"), str(tmp_path / "got.npy")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "got.npy")
    with np.load(tmp_path / "nf4" / "test_predictions.npz") as saved:
        np.testing.assert_array_equal(got.argmax(1), saved["logits"].argmax(1))
        np.testing.assert_allclose(got, saved["logits"], atol=1e-4, rtol=0)
    assert metrics["nf4"]["accuracy"] > metrics["none"]["accuracy"] - 0.08, metrics
