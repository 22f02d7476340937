"""Bad input: each case gets one clear message that names the problem and the fix (exit status
2, no traceback), and nothing produced earlier is lost: an existing complete run passed as
``--out`` (even with ``--overwrite``) stays byte-identical, and a fresh ``--out`` is not created."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lora_agnews.core import config, paths, runs
from lora_agnews.cli import main

SMOKE = ["--profile", "smoke", "-p", "epochs", "1"]


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory, train_smoke) -> Path:
    """A complete run made before the bad call (the thing that must survive it)."""
    return train_smoke(tmp_path_factory.mktemp("existing"), epochs=1)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def guarded(existing: Path):
    """The existing run; after the test it must be byte-identical (every file, nothing added)."""
    before = snapshot(existing)
    yield existing
    assert snapshot(existing) == before, "a refused call changed an existing run"


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *patterns: str) -> str:
    """Run the CLI in-process; it must exit 2 with one 'error:' line matching every pattern."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert line, err
    for pattern in patterns:
        assert re.search(pattern, line[-1]), f"{pattern!r} not in {line[-1]!r}"
    return line[-1]


# --------------------------------------------------------------------------- data
GOOD_ROWS = "".join(f'"{label}","Title {label} {i}","Some description number {i} of class {label}"\n'
                    for label in (1, 2, 3, 4) for i in range(4)).encode()

DATA_CASES = {
    # name: (train.csv bytes, test.csv bytes or None for missing, patterns for problem and fix)
    "empty csv": (b"", GOOD_ROWS, [r"train\.csv is empty", r"label,title,description"]),
    "malformed csv": (GOOD_ROWS + b'"3","Unclosed quote,"desc\n"1","T","D"\n', GOOD_ROWS,
                      [r"train\.csv line \d+ has \d column\(s\)", r"3 \(label,title,description\)"]),
    "missing columns": (b'"3","Only a title"\n' * 8, GOOD_ROWS,
                        [r"train\.csv line 1 has 2 column\(s\)", r"label,title,description"]),
    "label outside 1..4": (GOOD_ROWS + b'"5","T","D"\n', GOOD_ROWS,
                           [r"train\.csv line 17: label '5' is outside 1\.\.4", r"Fix or drop that row"]),
    "label zero in test": (GOOD_ROWS, b'"0","T","D"\n', [r"test\.csv line 1: label '0' is outside 1\.\.4"]),
    "header row": (b"label,title,description\n" + GOOD_ROWS, GOOD_ROWS,
                   [r"label 'label' is outside 1\.\.4", r"a header line is not allowed"]),
    "not utf-8": (GOOD_ROWS + '"2","Caf\xe9 society","D"\n'.encode("latin-1"), GOOD_ROWS,
                  [r"train\.csv is not UTF-8", r"iconv -f latin1 -t utf-8"]),
    "empty texts": (GOOD_ROWS + b'"2","",""\n', GOOD_ROWS,
                    [r"train\.csv line 17: title and description are both empty", r"Drop empty rows"]),
    "no test.csv": (GOOD_ROWS, None, [r"has no test\.csv", r"needs train\.csv and test\.csv"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_refused_and_nothing_is_lost(case: str, guarded: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    train_bytes, test_bytes, patterns = DATA_CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(train_bytes)
    if test_bytes is not None:
        (data / "test.csv").write_bytes(test_bytes)
    fresh = tmp_path / "fresh"
    refused(["train", *SMOKE, "-p", "data", str(data), "--out", str(fresh)], capsys, *patterns)
    assert not fresh.exists(), "a refused run must not create its output directory"
    # Even --overwrite must not delete the earlier run before the new one is known to be valid.
    refused(["train", *SMOKE, "-p", "data", str(data), "--out", str(guarded), "--overwrite"], capsys, *patterns)


def test_missing_data_directory(guarded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(["train", *SMOKE, "-p", "data", str(tmp_path / "nowhere"), "--out", str(guarded), "--overwrite"],
            capsys, r"data directory .*nowhere does not exist", r"-p data hub, -p data sample")


# --------------------------------------------------------------------------- configuration
def test_over_budget_is_refused_before_training(guarded: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fresh = tmp_path / "fresh"
    refused(["train", *SMOKE, "-p", "budget", "1000", "--out", str(fresh)], capsys,
            r"over the budget of 1,000", r"Refused before training", r"-p (lora_r \d+|head linear)")
    assert not fresh.exists()
    refused(["train", *SMOKE, "-p", "budget", "1000", "--out", str(guarded), "--overwrite"], capsys,
            r"over the budget of 1,000")


@pytest.mark.parametrize("argv, patterns", [
    (["-p", "lora_rank", "8"], [r"unknown parameter 'lora_rank'", r"Did you mean 'lora_r'\?"]),
    (["-p", "epochs", "many"], [r"parameter 'epochs' expects float, got 'many'", r"-p epochs 0\.1"]),
    (["-p", "lora_r", "4.5"], [r"parameter 'lora_r' expects int", r"-p lora_r 8"]),
    (["-p", "group_by_length", "perhaps"], [r"'group_by_length' expects bool", r"-p group_by_length true"]),
    (["-p", "head", "mlp"], [r"'head' must be one of default, linear, lora-dense; got 'mlp'"]),
    (["-p", "lora_r", "0"], [r"'lora_r' must be positive"]),
    (["--profile", "nope"], [r"unknown profile 'nope'", r"Available profiles: .*smoke", r"configs/nope\.yaml"]),
], ids=["unknown-name", "wrong-type-float", "wrong-type-int", "wrong-type-bool", "bad-choice", "range",
        "unknown-profile"])
def test_bad_parameters_through_the_cli(argv: list[str], patterns: list[str], guarded: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    refused(["train", *SMOKE, *argv, "--out", str(guarded), "--overwrite"], capsys, *patterns)
    refused(["params", *SMOKE, *argv], capsys, *patterns)


def test_missing_parameter_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--profile", "smoke", "--out", "x", "-p", "lora_r"])
    assert exc.value.code == 2
    assert "-p/--param: expected 2 arguments" in capsys.readouterr().err


def test_bad_parameters_through_the_papermill_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    """Notebook parameters are validated like CLI ones: papermill injects anything it is given."""
    from lora_agnews import pipeline

    with pytest.raises(config.ConfigError, match=r"unknown parameter 'lora_rank'.*Did you mean 'lora_r'"):
        pipeline.notebook_config({"profile": "smoke", "lora_rank": 8})
    with pytest.raises(config.ConfigError, match=r"'epochs' expects float, got 'many'"):
        pipeline.notebook_config({"profile": "smoke", "epochs": "many"})
    with pytest.raises(config.ConfigError, match=r"unknown profile 'nope'"):
        pipeline.notebook_config({"profile": "nope"})
    assert pipeline.notebook_config({"profile": "smoke", "lora_r": 4}).lora_r == 4
    # and `run` refuses before executing anything
    refused(["run", "--profile", "smoke", "-p", "lora_rank", "8"], capsys, r"unknown parameter 'lora_rank'")
    assert not paths.build_root().exists()


# --------------------------------------------------------------------------- run directories and adapters
def test_out_dir_with_another_configuration(existing: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(existing, copy)
    before = snapshot(copy)
    refused(["train", *SMOKE, "-p", "lora_r", "4", "--out", str(copy)], capsys,
            r"holds a run of a different configuration \(differs in: lora_r\)", r"another --out", r"--overwrite")
    assert snapshot(copy) == before
    assert main(["train", *SMOKE, "-p", "lora_r", "4", "--out", str(copy), "--overwrite"]) == 0
    record = runs.read_record(copy)
    assert record["config"]["lora_r"] == 4 and record["status"] == "complete" and record["attempts"] == 1


def test_missing_or_incomplete_adapter(existing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lora_agnews.core.adapter import AdapterError, load_adapter

    refused(["predict", "--adapter", str(tmp_path / "none"), "headline"], capsys,
            r"adapter directory .*none does not exist", r"python -m lora_agnews train --out RUN")
    partial = tmp_path / "partial"
    shutil.copytree(existing / "adapter", partial)
    (partial / "adapter_model.safetensors").unlink()
    refused(["predict", "--adapter", str(partial), "headline"], capsys,
            r"not a complete adapter directory \(missing adapter_model\.safetensors\)")
    with pytest.raises(AdapterError, match="does not exist"):
        load_adapter(tmp_path / "none")


# --------------------------------------------------------------------------- unreachable hub
HUB_SCRIPT = textwrap.dedent("""
    import sys
    if sys.argv[1] == "refuse":  # the network boundary: every HTTP request fails to connect, no backoff waits
        import httpx2, huggingface_hub.utils._http as http

        def refuse(self, request):
            raise httpx2.ConnectError("[Errno 101] Network is unreachable", request=request)

        httpx2.HTTPTransport.handle_request = refuse
        http.time.sleep = lambda seconds: None
    from lora_agnews.cli import main
    out = sys.argv[2]
    codes = [main(["train", "--profile", "smoke", "--out", out, "--overwrite", "-p", "data", "hub"]),
             main(["train", "--profile", "smoke", "--out", out, "--overwrite",
                   "-p", "model_name", "roberta-base", "-p", "init", "pretrained"])]
    print(codes)
""")


@pytest.mark.parametrize("mode", ["offline", "refuse"])
@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_unreachable_hub_without_local_copy(mode: str, existing: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(existing, copy)
    before = snapshot(copy)
    home = tmp_path / "hf-home"  # no cached datasets or models
    home.mkdir()
    offline = "1" if mode == "offline" else "0"
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": offline, "HF_DATASETS_OFFLINE": offline,
           "TRANSFORMERS_OFFLINE": offline, "OMP_NUM_THREADS": "1", "LORA_AGNEWS_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", HUB_SCRIPT, mode, str(copy)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[2, 2]"
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2, out.stderr[-3000:]
    assert re.search(r"could not load 'fancyzhx/ag_news' from the Hugging Face hub", errors[0])
    assert re.search(r"-p data /path/to/ag_news_csv .*or use -p data sample", errors[0])
    assert re.search(r"cannot load 'roberta-base'.*hub did not answer", out.stderr)
    assert "-p model_name /path/to/model" in out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(copy) == before


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Spreadsheet exports start with a UTF-8 byte-order mark; it is not part of the first label."""
    from lora_agnews.core.tasks.agnews import read_agnews_csv

    rows = '"2","Striker scores twice","The club won the derby."\n"3","Shares fall","Markets slid on Monday."\n'
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    plain.write_bytes(rows.encode("utf-8"))
    marked.write_bytes(b"\xef\xbb\xbf" + rows.encode("utf-8"))
    with_bom = read_agnews_csv(marked)
    assert with_bom["label"].tolist() == [1, 2]
    assert with_bom.equals(read_agnews_csv(plain))


# --------------------------------------------------------------------------- values no run can use
@pytest.mark.parametrize("argv, patterns", [
    (["-p", "learning_rate", "nan"], [r"'learning_rate'", r"nan", r"finite"]),
    (["-p", "learning_rate", "inf"], [r"'learning_rate'", r"inf", r"finite"]),
    (["-p", "learning_rate", "0"], [r"'learning_rate'", r"0\.0", r"positive"]),
    (["-p", "method_learning_rates", "lora=inf"], [r"'method_learning_rates'", r"'inf'", r"vera=0\.01"]),
    (["-p", "lr_candidates", "lora=0.003,nan"], [r"'lr_candidates'", r"'nan'", r"positive"]),
    (["-p", "lora_alpha", "0"], [r"'lora_alpha'", r"got 0", r"-p lora_alpha 16"]),
    (["-p", "weight_decay", "-0.1"], [r"'weight_decay'", r"-0\.1", r"-p weight_decay 0\.01"]),
    (["-p", "max_length", "513"], [r"'max_length' is 513", r"512 tokens", r"-p max_length 512"]),
    (["-p", "merge_max_length", "600"], [r"'merge_max_length' is 600", r"-p merge_max_length 512"]),
    (["-p", "device", "cuda"], [r"'device' is 'cuda'", r"no CUDA", r"-p device (auto|cpu)"]),
    (["-p", "profile", "demo"], [r"'profile'", r"'demo'", r"--profile demo"]),
], ids=["lr-nan", "lr-inf", "lr-zero", "method-rate-inf", "candidate-nan", "alpha-zero", "negative-decay",
        "max-length-beyond-positions", "merge-max-length", "cuda-without-cuda", "profile-override"])
def test_unusable_values_are_refused_before_anything_is_written(argv: list[str], patterns: list[str], guarded: Path,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same case on a GPU machine
    fresh = tmp_path / "fresh"
    refused(["train", *SMOKE, *argv, "--out", str(fresh)], capsys, *patterns)
    assert not fresh.exists()
    refused(["train", *SMOKE, *argv, "--out", str(guarded), "--overwrite"], capsys, *patterns)
    assert not list(paths.cache_dir().glob("tokens-*")), "nothing tokenized (and cached) for a refused run"


def test_max_length_limit_follows_the_architecture() -> None:
    """RoBERTa-style models number positions from padding_idx + 1 (514 entries hold 512 tokens); BERT's do not."""
    from lora_agnews.core.build import check_max_length
    from lora_agnews.core.encoders import known_config
    from lora_agnews.core.families import usable_positions

    labels = ("a", "b")
    for name, usable in [("roberta-base", 512), ("microsoft/mpnet-base", 512), ("bert-base-uncased", 512)]:
        model_cfg = known_config(name, labels)
        assert usable_positions(model_cfg) == usable
        check_max_length(config.load("smoke", {"model_name": name, "max_length": usable}), model_cfg)
        with pytest.raises(config.ConfigError, match=rf"'max_length' is {usable + 1}.*-p max_length {usable}"):
            check_max_length(config.load("smoke", {"model_name": name, "max_length": usable + 1}), model_cfg)


# --------------------------------------------------------------------------- long texts and damaged adapters
LONG_TEXT = " ".join(["stocks rally as oil prices fall"] * 800)  # 4,800 words: far beyond 512 positions


def test_predict_truncates_a_long_text_as_training_does(existing: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lora_agnews.core.adapter import load_adapter, predict_texts

    adapter = existing / "adapter"
    model, tokenizer, cfg = load_adapter(adapter)
    words = LONG_TEXT.split()
    cut = " ".join(words[:cfg.max_length - 2])  # <s> and </s> take two of max_length
    assert predict_texts(model, tokenizer, cfg, [LONG_TEXT]) == pytest.approx(predict_texts(model, tokenizer, cfg, [cut]))
    # an adapter recorded with a max_length beyond the encoder's positions is cut at the positions, not crashed
    wide = tmp_path / "wide"
    shutil.copytree(adapter, wide)
    info = json.loads((wide / "lora_agnews_config.json").read_text())
    info["config"]["max_length"] = 5000
    (wide / "lora_agnews_config.json").write_text(json.dumps(info))
    assert main(["predict", "--adapter", str(wide), "--json", LONG_TEXT]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    shown = json.loads(captured.out)[0]["probabilities"]
    model, tokenizer, cfg = load_adapter(wide)
    at_positions = predict_texts(model, tokenizer, cfg, [" ".join(words[:510])])[0]
    assert list(shown.values()) == pytest.approx(list(at_positions), abs=1e-6)


def _drop_tensors(adapter: Path, copy: Path, dropped: Any) -> list[str]:
    """``adapter`` copied to ``copy`` with the tensors whose names ``dropped`` accepts removed from its weights."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, copy)
    weights = copy / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: v for k, v in tensors.items() if not dropped(k)}, str(weights))
    return sorted(k for k in tensors if dropped(k))


def test_an_adapter_without_its_head_is_refused(existing: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from lora_agnews.core.adapter import AdapterError, load_adapter

    headless = tmp_path / "headless"
    assert _drop_tensors(existing / "adapter", headless, lambda k: ".classifier." in k)
    refused(["predict", "--adapter", str(headless), "headline"], capsys,
            r"headless/adapter_model\.safetensors", r"\(classifier\)", r"retrain")
    with pytest.raises(AdapterError, match="classifier"):
        load_adapter(headless)
    factorless = tmp_path / "factorless"  # any trained tensor, not only the head: PEFT would keep its fresh value
    gone = _drop_tensors(existing / "adapter", factorless, lambda k: "layer.1.attention.self.value.lora_B" in k)
    with pytest.raises(AdapterError, match=re.escape(gone[0].removeprefix("base_model.model."))):
        load_adapter(factorless)
