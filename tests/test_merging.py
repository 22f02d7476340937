"""Multi-task LoRA merging (lora_agnews.studies.merging) on the tiny random RoBERTa and three small local tasks.

Three tasks with 2, 3 and 5 labels (so the heads differ in width) are trained once for the module;
the study's numbers are meaningless for merging itself (random encoder), but every path that
produces them is checked: heads swap without touching the merged factors, the own adapter rescored
through the merge path reproduces its saved predictions, a merged adapter reloads in a fresh
process with the same logits, and every refusal happens before anything is written.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_agnews.core import config
from lora_agnews.studies import merging, merging_study as study_mod
from lora_agnews.core.budget import BudgetError
from lora_agnews.core.encoders import build_local_tokenizer

TASKS = {"mood": ["neg", "pos"], "topic": ["art", "sci", "war"], "hue": ["red", "green", "blue", "cyan", "gray"]}
N_TRAIN, N_TEST, EPOCHS = 90, 40, 4
FILLER = "the a of and to in is for on with news today".split()


def make_task(root: Path, name: str, labels: list[str], seed: int) -> Path:
    """A ``label,text`` task directory whose texts name their label with task-specific words."""
    rng = random.Random(seed)
    directory = root / name
    directory.mkdir(parents=True)
    words = {label: [f"{name}{label}{i}" for i in range(3)] for label in labels}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        with open(directory / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "text"])
            for i in range(n):
                label = labels[i % len(labels)]
                tokens = rng.sample(words[label], 2) + rng.sample(FILLER, 3)
                rng.shuffle(tokens)
                writer.writerow([label, " ".join(tokens)])
    (directory / "classes.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """Task directories, and the study's results/cache environment for the whole module."""
    root = tmp_path_factory.mktemp("merging")
    tasks = [make_task(root / "tasks", name, labels, seed) for seed, (name, labels) in enumerate(TASKS.items())]
    from conftest import outputs_under

    with outputs_under(root):
        yield root, tasks


@pytest.fixture(scope="module")
def study(env):
    root, tasks = env
    cfg = config.load("smoke", {"epochs": EPOCHS})
    return study_mod.run_study(cfg, [str(t) for t in tasks], root / "study")


def _adapters(root: Path) -> list[Path]:
    return [root / "study" / "tasks" / name / "adapter" for name in TASKS]


def test_study_scores_every_task_every_way(env, study) -> None:
    root, _ = env
    frame = study_mod.results_frame(study)
    methods = [merging.OWN, *(merging.merge_method(c) for c in merging.default_combinations()),
               merging.HEAD_ONLY, merging.MULTITASK]
    assert len(merging.COMBINATIONS) == 7
    assert list(frame.columns) == list(study_mod.COLUMNS)
    assert len(frame) == len(TASKS) * len(methods)
    for name, labels in TASKS.items():
        rows = frame[frame.task == name].set_index("method")
        assert list(rows.index) == methods
        assert (rows.n_test == N_TEST).all()
        assert ((rows.ci_low <= rows.accuracy) & (rows.accuracy <= rows.ci_high)).all()
        assert ((rows.diff_ci_low <= rows.diff_to_own + 1e-6) & (rows.diff_to_own - 1e-6 <= rows.diff_ci_high)).all()
        own = rows.loc[merging.OWN]
        assert own.retention == 1.0 and own.diff_to_own == 0.0 and own.mcnemar_p == 1.0
        # the words name the label: the task's own adapter and the joint model learn it
        assert own.accuracy > 1.0 / len(labels) + 0.2, (name, own.accuracy)
        assert rows.loc[merging.MULTITASK].accuracy > 1.0 / len(labels), name
        np.testing.assert_allclose(rows.retention, (rows.accuracy - rows.chance) / (own.accuracy - rows.chance))
        # McNemar counts the discordant pairs the accuracies imply
        assert ((rows.mcnemar_c - rows.mcnemar_b) == np.round((rows.accuracy - own.accuracy) * N_TEST)).all()
    # stored results are the frame, as plain JSON
    saved = json.loads((root / "study" / study_mod.STUDY_FILE).read_text())
    assert json.dumps(study_mod.results_dict(study), allow_nan=False)
    assert [r["method"] for r in saved["rows"]] == list(frame.method)
    assert saved["rows"][1]["accuracy"] == pytest.approx(frame.accuracy.iloc[1])
    assert "not what merging does" in saved["note"]


def test_trainable_counts_are_exact(study) -> None:
    """Merged LoRA + the task's own head; cat stacks the ranks; MTL = one LoRA + three linear heads."""
    frame = study_mod.results_frame(study).set_index(["task", "method"])
    hidden = 64  # the tiny RoBERTa
    lora = {n: frame.loc[(n, merging.OWN), "trainable_params"] - frame.loc[(n, merging.HEAD_ONLY), "trainable_params"]
            for n in TASKS}
    assert len(set(lora.values())) == 1  # one LoRA shape on one base, whatever the task
    for name, labels in TASKS.items():
        head = frame.loc[(name, merging.HEAD_ONLY), "trainable_params"]
        assert head == hidden * hidden + hidden + hidden * len(labels) + len(labels)  # default head: dense + out_proj
        assert frame.loc[(name, "merge cat"), "trainable_params"] == len(TASKS) * lora[name] + head
        assert frame.loc[(name, "merge ties d=0.5"), "trainable_params"] == lora[name] + head
    linear_heads = sum(hidden * len(labels) + len(labels) for labels in TASKS.values())
    mtl = frame.loc[("mood", merging.MULTITASK), "trainable_params"]
    assert mtl == lora["mood"] + linear_heads <= config.load("smoke").budget


def test_own_adapter_rescored_through_the_merge_path_matches_its_run(study) -> None:
    """LoRA-only factors + the head put back into the base reproduce what training scored."""
    gaps = study.settings["own_rescore_max_abs_diff"]
    assert set(gaps) == set(TASKS) and max(gaps.values()) < 1e-4


def test_merge_differs_from_own_adapter(study) -> None:
    for scores in study.tasks:
        assert not np.allclose(scores.logits["merge cat"], scores.logits[merging.OWN])


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_merged_adapter_reloads_in_a_fresh_process(env, study) -> None:
    """merge_adapters + load_merged in a new interpreter give the study's in-process logits (DARE's masks included)."""
    root, _ = env
    combo = merging.make_combination("dare_ties", density=0.5)
    out = merging.merge_adapters(_adapters(root), combo, out_dir=root / "merged")
    assert merging.merged_tasks(out) == list(TASKS)
    manifest = merging.read_manifest(out)
    assert manifest["combination"]["kind"] == "dare_ties" and manifest["combination"]["density"] == 0.5
    script = (
        "import json, sys, numpy as np\n"
        "from lora_agnews.studies import merging\n"
        "from lora_agnews.core.adapter import predict_logits_for_texts\n"
        "from lora_agnews.core.dataset import load_splits\n"
        "from lora_agnews.core.tasks.registry import model_labels\n"
        "labels = {}\n"
        "for name in json.loads(sys.argv[2]):\n"
        "    m, tok, cfg = merging.load_merged(sys.argv[1], name)\n"
        "    labels[name] = list(model_labels(m))\n"
        "    texts = load_splits(cfg).test['text'].tolist()\n"
        "    np.save(sys.argv[1] + '/' + name + '.npy', predict_logits_for_texts(m, tok, cfg, texts))\n"
        "print(json.dumps(labels))\n")
    run_env = {**os.environ, "LORA_AGNEWS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(out), json.dumps(list(TASKS))], capture_output=True,
                          text=True, env=run_env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == TASKS
    for scores in study.tasks:
        np.testing.assert_allclose(np.load(out / f"{scores.name}.npy"), scores.logits[merging.merge_method(combo)],
                                   atol=1e-5)
    with pytest.raises(merging.MergingError, match="holds no task 'nope'.*mood, topic, hue"):
        merging.load_merged(out, "nope")


def _copy_adapter(src: Path, dest: Path, **config_changes) -> Path:
    shutil.copytree(src, dest)
    info_file = dest / "lora_agnews_config.json"
    info = json.loads(info_file.read_text())
    info["config"].update(config_changes)
    info_file.write_text(json.dumps(info))
    return dest


def test_merge_refuses_before_writing(env, study, tmp_path) -> None:
    root, _ = env
    adapters = _adapters(root)
    out = tmp_path / "never"

    def refused(match: str, dirs: list[Path], *args, **kwargs) -> None:
        with pytest.raises(merging.MergingError, match=match):
            merging.merge_adapters(dirs, *args, out_dir=out, **kwargs)
        assert not out.exists()

    refused("another base.*seed 43 vs 42", [adapters[0], _copy_adapter(adapters[1], tmp_path / "s", seed=43)], "cat")
    refused("another base.*model_name", [adapters[0], _copy_adapter(adapters[1], tmp_path / "m", model_name="roberta-base")],
            "cat")
    refused("method 'ia3' cannot be merged", [adapters[0], _copy_adapter(adapters[1], tmp_path / "i", method="ia3")],
            "cat")
    refused("both called 'mood'", [adapters[0], adapters[0]], "cat")
    other_tok = _copy_adapter(adapters[1], tmp_path / "t")

    build_local_tokenizer(["quite another vocabulary"]).save_pretrained(str(other_tok))
    refused("different tokenizers", [adapters[0], other_tok], "cat")
    ranked = _copy_adapter(adapters[1], tmp_path / "r")
    peft_cfg = json.loads((ranked / "adapter_config.json").read_text())
    (ranked / "adapter_config.json").write_text(json.dumps({**peft_cfg, "r": 4}))
    refused(r"'linear' needs adapters of one rank; got ranks \[8, 4\]", [adapters[0], ranked], "linear")
    refused("needs a density", adapters, "ties")
    refused("does not prune", adapters, "linear", density=0.5)
    refused(r"outside \(0, 1\]", adapters, "dare_linear", density=0.0)
    refused("unknown combination type 'mean'", adapters, "mean")
    refused("2 weight", adapters, "linear", weights=[1.0, 1.0])
    refused("at least 2 adapters", adapters[:1], "cat")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(merging.MergingError, match="not a merged adapter directory"):
        merging.merge_adapters(adapters, "cat", out_dir=tmp_path / "busy")
    assert issubclass(merging.MergingError, ValueError)  # the CLI prints `error: ...` and exits 2


def test_study_refuses_before_writing(env, tmp_path) -> None:
    _, tasks = env
    out = tmp_path / "study"
    smoke = config.load("smoke", {"epochs": 1})
    cases = [
        (smoke.replace(method="vera", lora_targets="query,value"), [tasks[0], tasks[1]], "method 'vera' cannot be merged"),
        (smoke.replace(lora_variant="dora"), [tasks[0], tasks[1]], "lora_variant 'dora'"),
        (smoke.replace(head="lora-dense"), [tasks[0], tasks[1]], "head 'lora-dense'"),
        (smoke, [tasks[0]], "at least 2 tasks"),
    ]
    twin = tmp_path / "elsewhere" / "mood"
    shutil.copytree(tasks[0], twin)
    cases.append((smoke, [tasks[0], twin], "both called 'mood'"))
    for cfg, chosen, match in cases:
        with pytest.raises(merging.MergingError, match=match):
            study_mod.run_study(cfg, [str(t) for t in chosen], out)
        assert not out.exists()
    with pytest.raises(BudgetError, match="over the budget"):
        study_mod.run_study(smoke.replace(budget=5000), [str(t) for t in tasks], out)
    assert not out.exists()


def test_study_reuses_complete_runs(env, study) -> None:
    """A second study over the same directory trains nothing again (runs, floor and joint model reused)."""
    root, tasks = env
    stamps = {p: p.stat().st_mtime_ns for p in (root / "study").rglob("*.safetensors")}
    again = study_mod.run_study(config.load("smoke", {"epochs": EPOCHS}), [str(t) for t in tasks], root / "study",
                              combinations=[merging.make_combination("cat")])
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    for first, second in zip(study.tasks, again.tasks):
        np.testing.assert_array_equal(first.logits[merging.HEAD_ONLY], second.logits[merging.HEAD_ONLY])
        np.testing.assert_array_equal(first.logits[merging.MULTITASK], second.logits[merging.MULTITASK])
        np.testing.assert_allclose(first.logits["merge cat"], second.logits["merge cat"], atol=1e-6)


# --------------------------------------------------------------------------- the command line
def test_merge_command_writes_an_adapter_that_predict_uses_per_task(env, study, tmp_path, capsys) -> None:
    from lora_agnews import cli

    root, _ = env
    out = tmp_path / "merged"
    argv = ["merge", "--adapters", *map(str, _adapters(root)), "--combination", "ties", "--density", "0.5",
            "--out", str(out)]
    assert cli.main(argv) == 0
    said = capsys.readouterr().out
    assert "merged 3 adapters with ties" in said and "mood (2 classes)" in said and "hue (5 classes)" in said
    for task, labels in TASKS.items():
        assert cli.main(["predict", "--adapter", str(out), "--task", task, "--json", f"{task}{labels[0]}0 news"]) == 0
        row = json.loads(capsys.readouterr().out)[0]
        assert list(row["probabilities"]) == labels
    # a merged directory needs --task; an adapter of one task refuses another task's name
    assert cli.main(["predict", "--adapter", str(out), "some text"]) == 2
    assert "merges the tasks mood, topic, hue" in capsys.readouterr().err
    assert cli.main(["predict", "--adapter", str(_adapters(root)[0]), "--task", "hue", "x"]) == 2
    assert "trained on task 'mood', not 'hue'" in capsys.readouterr().err


def test_merge_command_refuses_bad_input_before_writing(env, study, tmp_path, capsys) -> None:
    from lora_agnews import cli

    root, _ = env
    out = tmp_path / "never"
    first = str(_adapters(root)[0])
    assert cli.main(["merge", "--adapters", first, first, "--combination", "ties", "--density", "0.5",
                     "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()
    assert cli.main(["merge", "--adapters", *map(str, _adapters(root)), "--combination", "linear", "--density", "0.5",
                     "--out", str(out)]) == 2
    assert "does not prune" in capsys.readouterr().err and not out.exists()


def test_each_task_of_a_study_reads_its_own_source(tmp_path) -> None:
    """AG News reads `data`; the registered tasks the hub or their PyPI copy, never an AG News directory."""
    agnews_dir = tmp_path / "agnews-csv"
    agnews_dir.mkdir()
    for data, others in ((str(agnews_dir), "pypi"), ("sample", "pypi"), ("hub", "hub")):
        cfg = config.load("smoke", {"data": data})
        got = {c.task: c.data for c in study_mod.task_configs(cfg, ["agnews", "rotten_tomatoes", "bbc_news"])}
        assert got == {"agnews": data, "rotten_tomatoes": others, "bbc_news": others}
