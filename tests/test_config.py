"""Config: strict keys and types, CLI-string coercion, profiles, immutability, run keys."""

from __future__ import annotations

import dataclasses

import pytest

from lora_agnews.core import config, paths
from lora_agnews.core.config import Config, ConfigError


def test_defaults_are_valid_and_match_demo_profile_model() -> None:
    cfg = Config()
    assert cfg.profile == "demo"
    assert cfg.target_modules == ["query", "key", "value"]
    assert cfg.layers is None
    demo = config.load("demo")
    assert demo.model_name == cfg.model_name


@pytest.mark.parametrize("name", ["smoke", "demo", "cpu", "base", "paper"])
def test_profiles_load(name: str) -> None:
    cfg = config.load(name)
    assert cfg.profile == name
    assert name in paths.available_profiles()


def test_profile_values_are_applied() -> None:
    smoke, paper = config.load("smoke"), config.load("paper")
    assert (smoke.model_name, smoke.init, smoke.tokenizer, smoke.precision) == ("tiny-roberta", "random", "local", "fp32")
    assert (paper.model_name, paper.data, paper.head, paper.lora_r) == ("roberta-base", "hub", "linear", 18)
    assert isinstance(paper.epochs, float)  # YAML int 3 coerced to the declared float


def test_overrides_win_over_profile() -> None:
    cfg = config.load("smoke", {"lora_r": "4", "epochs": "1.5", "group_by_length": "false"})
    assert (cfg.lora_r, cfg.epochs, cfg.group_by_length) == (4, 1.5, False)


def test_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict({"lora_rank": 8})
    msg = str(info.value)
    assert "'lora_rank'" in msg and "Did you mean 'lora_r'?" in msg


def test_unknown_key_in_load_overrides() -> None:
    with pytest.raises(ConfigError, match="learning_rte"):
        config.load("smoke", {"learning_rte": 0.1})


@pytest.mark.parametrize(
    ("key", "value", "type_name"),
    [("lora_r", "eight", "int"), ("learning_rate", "fast", "float"), ("compile", "maybe", "bool"),
     ("lora_r", 2.5, "int"), ("lora_r", True, "int"), ("model_name", 3, "str"), ("lora_r", "8.5", "int")],
)
def test_wrong_type_names_key_and_type(key: str, value: object, type_name: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict({key: value})
    msg = str(info.value)
    assert f"'{key}'" in msg and f"expects {type_name}" in msg


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="'lora_r' expects int"):
        Config(lora_r="8")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [("lora_r", "16", 16), ("lora_r", "16.0", 16), ("budget", "1e6", 1_000_000), ("learning_rate", "5e-4", 5e-4),
     ("epochs", "3", 3.0), ("compile", "true", True), ("compile", "Yes", True), ("compile", "1", True),
     ("group_by_length", "off", False), ("group_by_length", "0", False), ("lora_targets", "query,value", "query,value")],
)
def test_cli_string_coercion(key: str, text: str, expected: object) -> None:
    value = config.coerce(key, text)
    assert value == expected and type(value) is type(expected)


def test_int_becomes_float_and_none_becomes_empty_string() -> None:
    assert type(config.coerce("epochs", 2)) is float
    assert config.coerce("tokenizer", None) == ""


@pytest.mark.parametrize("key", ["init", "head", "lora_variant", "scheduler", "precision", "device"])
def test_invalid_choice(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict({key: "bogus"})
    msg = str(info.value)
    assert f"'{key}'" in msg and "bogus" in msg
    for option in config.CHOICES[key]:
        assert option in msg


@pytest.mark.parametrize(
    ("values", "fragment"),
    [({"lora_r": 0}, "lora_r"), ({"val_fraction": 0.5}, "val_fraction"), ({"warmup": 1.0}, "warmup"),
     ({"lora_dropout": 1.0}, "lora_dropout"), ({"lora_targets": " , "}, "lora_targets"),
     ({"lora_layers": "0,x"}, "lora_layers"), ({"distill_alpha": 1.5}, "distill_alpha"),
     ({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"),
     ({"learning_rate": float("nan")}, "learning_rate.*nan"), ({"learning_rate": "inf"}, "learning_rate.*inf"),
     ({"learning_rate": 0}, "learning_rate"), ({"epochs": "nan"}, "epochs.*nan"), ({"lora_alpha": 0}, "lora_alpha.*0"),
     ({"baseline_alpha": -4}, "baseline_alpha.*-4"), ({"weight_decay": -0.01}, "weight_decay.*-0.01"),
     ({"method_learning_rates": "vera=inf"}, "method_learning_rates.*inf"),
     ({"lr_candidates": "lora=0.003,nan"}, "lr_candidates.*nan")],
)
def test_range_checks(values: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config.from_dict(values)


def test_profile_is_not_an_override() -> None:
    """An override of ``profile`` would write results under one profile and stamp them with another."""
    with pytest.raises(ConfigError, match=r"'profile'.*'demo'.*--profile demo"):
        config.load("smoke", {"profile": "demo"})
    assert config.load("smoke", {"profile": "smoke"}).profile == "smoke"


def test_layers_parsed() -> None:
    assert config.from_dict({"lora_layers": "0, 3,5"}).layers == [0, 3, 5]


def test_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lora_r = 4  # type: ignore[misc]


def test_replace_returns_validated_copy() -> None:
    cfg = config.load("smoke")
    other = cfg.replace(lora_r=2, head="linear")
    assert (other.lora_r, other.head) == (2, "linear")
    assert cfg.lora_r == 8 and cfg.head == "default"  # original untouched
    with pytest.raises(ConfigError, match="head"):
        cfg.replace(head="mlp")
    with pytest.raises(ConfigError, match="nonsense"):
        cfg.replace(nonsense=1)


def test_run_key_excludes_profile_and_ablation_keys() -> None:
    cfg = config.load("smoke")
    key = cfg.run_key()
    for name in ("profile", "n_seeds", "ablation_ranks", "ablation_targets", "ablation_heads", "ablation_epochs",
                 "baseline_r", "baseline_alpha", "baseline_targets", "baseline_head"):
        assert name not in key
    assert key["lora_r"] == cfg.lora_r and key["seed"] == cfg.seed
    # the same run under another profile name or ablation grid is the same run ...
    assert cfg.replace(profile="other", ablation_ranks="1", n_seeds=5, baseline_r=3).run_key() == key
    # ... but anything that changes what is computed is not
    assert cfg.replace(seed=7).run_key() != key
    assert cfg.replace(lora_targets="query").run_key() != key


# The fields that identify a run, as recorded in every run.json so far: moving a field into or out of the run
# section changes every identity, so complete runs would be retrained (or wrong ones reused).
RECORDED_RUN_FIELDS = {
    "model_name", "init", "tokenizer", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lora_layers",
    "lora_variant", "head", "method", "adalora_target_r", "prompt_tokens", "budget", "quantize", "quantize_double",
    "task", "data", "max_length", "val_fraction", "max_train_samples", "max_val_samples", "max_eval_samples",
    "epochs", "batch_size", "eval_batch_size", "learning_rate", "weight_decay", "warmup", "scheduler",
    "label_smoothing", "early_stopping", "evals_per_epoch", "seed", "precision", "device", "group_by_length",
    "merge_eval", "compile", "pad_multiple", "distill_logits", "distill_alpha", "distill_temperature"}


def test_every_field_is_in_one_section_and_the_run_section_is_the_recorded_one() -> None:
    declared = [name for names in config.SECTIONS.values() for name in names]
    assert len(declared) == len(set(declared)) and set(declared) <= set(config.keys())
    assert set(config.RUN_KEYS) == RECORDED_RUN_FIELDS == set(config.keys()) - set(declared)
    assert set(config.NEW_KEY_DEFAULTS) <= set(config.RUN_KEYS)


@pytest.mark.parametrize("name", ["smoke", "demo", "cpu", "base", "paper"])
def test_run_key_is_the_run_section_for_every_profile(name: str) -> None:
    cfg = config.load(name)
    values = cfg.to_dict()
    expected = {k: values[k] for k in RECORDED_RUN_FIELDS if config.NEW_KEY_DEFAULTS.get(k, object()) != values[k]}
    assert cfg.run_key() == {**expected, "data_format": config.DATA_FORMAT}
    study = {"profile": "other", "report_to": "tensorboard", "n_seeds": 4, "seed_eval_samples": 37, "study_top": 1, "baseline_r": 3,
             "ablation_ranks": "1", "lr_candidates": "lora=0.1,0.2", "merge_lora_r": 2, "merge_tasks": "agnews",
             "quantize_schemes": "none", "quantize_seeds": 2,
             "multilabel_task": "go_emotions", "multilabel_batch_size": 4}
    assert cfg.replace(**study).run_key() == cfg.run_key()
    assert cfg.replace(method="vera").run_key() != cfg.run_key()


def test_to_json_and_from_dict_round_trip() -> None:
    import json

    cfg = config.load("paper")
    assert config.from_dict(json.loads(cfg.to_json())) == cfg


def test_from_namespace_picks_parameter_names_only() -> None:
    namespace = {"lora_r": 3, "head": "linear", "np": object(), "_": None}
    cfg = config.from_namespace(namespace)
    assert (cfg.lora_r, cfg.head) == (3, "linear")


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ConfigError) as info:
        config.load("nosuchprofile")
    msg = str(info.value)
    assert "nosuchprofile" in msg
    for name in ("demo", "paper", "smoke"):
        assert name in msg


def test_profile_with_unknown_key_names_file_and_key(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.yaml").write_text("lora_r: 4\nlearning_rat: 0.1\n", encoding="utf-8")
    monkeypatch.setattr(paths, "CONFIGS", tmp_path)
    with pytest.raises(ConfigError) as info:
        config.load("mine")
    msg = str(info.value)
    assert str(tmp_path / "mine.yaml") in msg and "'learning_rat'" in msg and "learning_rate" in msg


def test_profile_with_bad_yaml_or_shape(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "CONFIGS", tmp_path)
    (tmp_path / "broken.yaml").write_text("lora_r: [4\n", encoding="utf-8")
    (tmp_path / "listy.yaml").write_text("- lora_r\n", encoding="utf-8")
    (tmp_path / "ok.yaml").write_text("lora_r: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load("broken")
    with pytest.raises(ConfigError, match="mapping"):
        config.load("listy")
    cfg = config.load("ok")
    assert (cfg.profile, cfg.lora_r) == ("ok", 4)
    assert paths.available_profiles() == ["broken", "listy", "ok"]


def test_keys_lists_every_field() -> None:
    names = config.keys()
    assert names[0] == "profile" and "lora_r" in names and len(names) == len(set(names))
    assert set(names) == set(Config().to_dict())


@pytest.mark.parametrize("name", paths.available_profiles())
def test_profile_states_only_what_differs_from_the_defaults(name: str) -> None:
    restated = [k for k, v in config.read_profile(name).items()
                if k != "profile" and config.coerce(k, v) == getattr(Config, k)]
    assert not restated, f"configs/{name}.yaml restates the defaults of {restated}: delete those lines"
