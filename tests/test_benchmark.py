"""The throughput benchmark runs end to end and reports every figure (numbers not judged: not a timed test).

Runs ``benchmarks/train_throughput.py --quick`` on the tiny RoBERTa with a word-level tokenizer
built from the shipped sample, so it needs neither ../shared nor the network. One process for
all checks (its start, importing torch and transformers, is most of the test's time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"
SAMPLE = ROOT / "data" / "sample" / "test.csv"
CONFIGS = ["baseline", "dynamic_bf16", "project", "trainer"]
TRAIN_FIELDS = ("seconds", "examples", "real_tokens", "padded_tokens", "examples_per_s", "real_tokens_per_s",
                "tflops_real", "tflops_padded", "frac_peak_real", "frac_peak_padded", "peak_memory_mb",
                "epoch_projected_s", "speedup_vs_baseline", "mean_real_tokens_per_example")
EVAL_FIELDS = ("seconds", "examples_per_s", "real_tokens_per_s", "tflops_real", "test_set_projected_s",
               "peak_memory_mb")


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_quick_benchmark_reports_all_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--model-shape", "tiny-roberta", "--device", "cpu",
         "--tokenizer", "local", "--data", str(SAMPLE), "--configs", ",".join(CONFIGS), "--eval",
         "--methods", "ia3,bitfit", "--quantize", "nf4",
         "--profile", "1", "--rounds", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    for key in ("date", "command", "versions", "device", "settings", "flop_model", "train", "eval", "targets"):
        assert key in report, key
    assert report["device"]["peak_bf16_tflops"] > 0 and report["device"]["name"]
    assert report["flop_model"]["frozen_linear"] > 0 and report["flop_model"]["lora_linear"] > 0
    assert list(report["train"]) == CONFIGS, report["notes"]
    examples = {v["examples"] for v in report["train"].values()}
    real = {v["real_tokens"] for v in report["train"].values()}
    assert len(examples) == 1 and len(real) == 1, "variants must process the same examples"
    for name, fig in report["train"].items():
        for key in TRAIN_FIELDS:
            assert fig[key] > 0, (name, key, fig[key])
        assert 0.0 <= fig["padded_fraction"] < 1.0
    base, proj = report["train"]["baseline"], report["train"]["project"]
    assert base["padded_fraction"] > proj["padded_fraction"], "pad-to-128 must pad more than length-grouped"
    assert base["speedup_vs_baseline"] == 1.0
    assert base["padded_tokens"] == 128 * base["examples"], "common practice pads every example to 128"
    for mode in ("unmerged", "merged"):
        for key in EVAL_FIELDS:
            assert report["eval"][mode][key] > 0, (mode, key)
    assert report["eval"]["max_abs_logit_diff_merged_vs_unmerged"] < 0.5  # same function, bf16 rounding
    assert report["profile"]["steps"] == 1 and report["profile"]["top_ops_by_self_cpu"]
    autocast_notes = [n for n in report["notes"] if "autocast not active" in n]
    if autocast_notes and autocast_notes == report["notes"]:  # open: seen on AMX CPUs since 2026-12-03, not AVX2
        pytest.xfail("known open finding on bf16 CPUs, stated in benchmarks/README.md: " + autocast_notes[0])
    assert report["notes"] == []
    # per-method cost: LoRA first (the reference), every method on the same examples at its budget-filling size
    assert list(report["methods"]) == ["lora", "ia3", "bitfit"]
    assert report["methods"]["lora"]["relative_to_lora"] == 1.0
    for name, fig in report["methods"].items():
        assert fig["examples_per_s"] > 0 and 0 < fig["trainable_params"] <= 1_000_000, (name, fig)
    assert report["methods"]["bitfit"]["setting"] == "BitFit, linear head"
    assert "vs LoRA" in proc.stdout
    # the quantized step: full precision first (the reference), then NF4 on the same examples and setting
    assert list(report["quantize"]) == ["none", "nf4"]
    assert report["quantize"]["none"]["relative_to_full_precision"] == 1.0
    assert report["quantize"]["nf4"]["base_mib"] < report["quantize"]["none"]["base_mib"]
    assert report["quantize"]["nf4"]["trainable_params"] == report["quantize"]["none"]["trainable_params"]
    assert "vs full" in proc.stdout
    # bf16 variants really ran bf16 matmuls, also the second (timed) Trainer on the same model:
    # accelerate marks a prepared model and would otherwise skip its autocast wrapper
    assert base["matmul_output_dtypes"] == ["torch.float32"]
    mixed = "torch.bfloat16" if report["settings"]["precision"] == "bf16" else "torch.float32"
    for name in ("dynamic_bf16", "project", "trainer"):
        assert report["train"][name]["matmul_output_dtypes"] == [mixed], name

    assert "variant" in proc.stdout and "120k epoch" in proc.stdout and "profile:" in proc.stdout
    for name in CONFIGS + ["unmerged", "merged"]:
        assert f"\n{name} " in proc.stdout, name



def test_baseline_truncates_like_a_tokenizer_and_pads_to_128() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    from lora_agnews.core.tokens import PadCollator

    collate = bench.TruncateTo(PadCollator(1, multiple=128), 128)
    long_row = {"input_ids": [0] + list(range(5, 303)) + [2], "labels": 1}  # 300 tokens
    short_row = {"input_ids": [0, 7, 8, 2], "labels": 0}
    out = collate([long_row, short_row])
    assert tuple(out["input_ids"].shape) == (2, 128)
    assert out["input_ids"][0, -1] == 2 and out["input_ids"][0, 0] == 0, "keeps <s> ... </s>"
    assert out["attention_mask"].sum(dim=1).tolist() == [128, 4]
