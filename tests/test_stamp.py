"""The stamp on the book and the report: what these results are, derived from the run's own record.

A meaningless number (random weights, 400 of 9,999 rows, a profile's result with its data swapped)
must never read as a result: the words come from ``reporting`` and the facts from ``run.json``.
"""

from __future__ import annotations

import re

import pytest

from lora_agnews.core import config
from lora_agnews.reporting import text as reporting

FACTS = {"pretrained": True, "n_train_used": 400, "n_validation": 400, "n_train_available": 9999,
         "n_test_used": 400, "n_test_available": 3800}


@pytest.mark.parametrize("profile", ["smoke", "demo", "cpu", "base", "paper"])
def test_pretrained_encoder_never_describes_a_random_run(profile: str) -> None:
    cfg = config.load(profile, {"init": "random"})
    facts = {**FACTS, "pretrained": False}
    texts = [reporting.profile_note(cfg, facts), reporting.describe_encoder(cfg, facts),
             *reporting.setup_macros(cfg, facts).values().__iter__()]
    for text in map(str, texts):
        assert not re.search(r"(?<!not )pretrained encoder", text), text
    note = reporting.profile_note(cfg, facts)
    assert "not pretrained" in note and "untrained model" in note
    assert reporting.shows_banner(cfg, facts), "random weights always carry the banner"


def test_random_init_is_stated_even_without_facts() -> None:
    cfg = config.load("smoke")  # the smoke profile itself is randomly initialised
    assert "not pretrained" in reporting.profile_note(cfg)
    assert "not pretrained" in reporting.describe_encoder(cfg, {})


def test_paper_dry_run_is_stamped_as_not_the_papers_result() -> None:
    cfg = config.load("paper", {"init": "random", "max_train_samples": 400, "max_eval_samples": 400, "epochs": 1.0,
                                "data": "/data/agnews-subset"})
    note = reporting.profile_note(cfg, FACTS | {"pretrained": False})
    assert "not the paper's result" in note
    assert "untrained model" in note
    assert "trained on 400 of 9,999 training rows" in note and "scored on 400 of 3,800 test rows" in note
    assert "1 epoch(s) instead of the profile's 3" in note
    assert "not the profile's AG News from the Hugging Face hub" in note
    assert reporting.shows_banner(cfg, FACTS)
    changed = reporting.changed_parameters(cfg)
    assert set(changed) == {"init", "max_train_samples", "max_eval_samples", "epochs", "data"}
    table = reporting.overrides_table(cfg).latex()
    for key in changed:
        assert key.replace("_", r"\_") in table


def test_plain_paper_profile_has_no_banner_and_says_what_it_is() -> None:
    cfg = config.load("paper")
    facts = FACTS | {"n_train_used": 114000, "n_validation": 6000, "n_train_available": 120000,
                     "n_test_used": 7600, "n_test_available": 7600}
    assert not reporting.shows_banner(cfg, facts)
    note = reporting.profile_note(cfg, facts)
    assert note.startswith("These results come from the paper profile: a frozen pretrained encoder (roberta-base)")
    assert "trained on 114,000 of 120,000 training rows" in note
    assert reporting.changed_parameters(cfg) == {}
    assert "None" in reporting.overrides_table(cfg).latex()


def test_more_epochs_or_more_rows_are_listed_but_not_departures() -> None:
    cfg = config.load("cpu", {"epochs": 3.0, "lora_r": 4})
    assert reporting.departures(cfg, FACTS) == []
    assert set(reporting.changed_parameters(cfg)) == {"epochs", "lora_r"}


def test_cpu_profile_note_states_real_rows_at_small_scale() -> None:
    cfg = config.load("cpu", {"data": "/x/agnews-subset"})
    facts = FACTS | {"n_train_used": 2000}
    note = reporting.profile_note(cfg, facts)
    assert "real findings at small scale, not roberta-base" in note
    assert "trained on 2,000 of 9,999 training rows" in note
    assert "pretrained encoder (sentence-transformers/all-MiniLM-L6-v2)" in note


def test_run_facts_fall_back_to_the_configuration() -> None:
    assert reporting.run_facts({}, config.load("smoke")) == {"pretrained": False}
    assert reporting.run_facts({"n_train_used": 5, "accuracy": 1.0}, config.load("demo")) == {
        "n_train_used": 5, "pretrained": True}


def test_banner_note_is_short_but_keeps_every_departure() -> None:
    cfg = config.load("paper", {"init": "random", "max_eval_samples": 400, "data": "/d/agnews-subset"})
    facts = FACTS | {"pretrained": False}
    short, full = reporting.banner_note(cfg, facts), reporting.profile_note(cfg, facts)
    assert len(short) < len(full)
    assert "roberta-base (NOT pretrained) on AG News rows from agnews-subset/" in short
    assert "not the paper's result" in short
    for sentence in reporting.departures(cfg, facts):
        assert sentence in short
    assert "real findings at small scale" in reporting.banner_note(config.load("cpu"), FACTS)
    assert "demonstration" in reporting.banner_note(config.load("demo"), FACTS)
