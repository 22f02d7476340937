"""Results written by an older version: the book and the report name the one command that regenerates them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_agnews import cli, pipeline


def _stamp(profile: str, **fields: object) -> Path:
    stamp = pipeline.stamp_path(profile)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"profile": profile, "finished": "2026-01-01", **fields}), encoding="utf-8")
    return stamp


def test_current_stamp_is_accepted() -> None:
    _stamp("smoke", results_format=pipeline.RESULTS_FORMAT)
    assert pipeline.require_results("smoke")["results_format"] == pipeline.RESULTS_FORMAT


@pytest.mark.parametrize("fields", [{}, {"results_format": pipeline.RESULTS_FORMAT - 1}])
@pytest.mark.parametrize("step", ["book", "report"])
def test_older_results_are_refused_with_the_regenerating_command(fields: dict, step: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """A stamp from before the format existed (no key) or with an older number: one line, the fix in it."""
    _stamp("smoke", **fields)
    assert cli.main(["run", "--profile", "smoke", "--steps", step]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    err = errors[0]
    assert "older version of lora_agnews" in err and "make notebooks PROFILE=smoke" in err
    assert f"this version reads {pipeline.RESULTS_FORMAT}" in err


def test_an_unreadable_stamp_names_the_fix() -> None:
    pipeline.stamp_path("smoke").parent.mkdir(parents=True, exist_ok=True)
    pipeline.stamp_path("smoke").write_text("{not json", encoding="utf-8")
    with pytest.raises(pipeline.PipelineError, match="make notebooks PROFILE=smoke"):
        pipeline.require_results("smoke")


def _latex_out(tmp_path: Path, log: str, generated: str = "") -> Path:
    out = tmp_path / "report"
    (out / "generated").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "generated" / "macros_training.tex").write_text(generated, encoding="utf-8")
    (out / "main.log").write_text(log, encoding="utf-8")
    return out


UNDEFINED = ("./main.tex:45: Undefined control sequence.\n"
             "l.45 The test accuracy is \\textbf{\\TestAccuracy}\n"
             "                                                  {}\n")


def test_a_macro_the_results_lack_is_named(tmp_path: Path) -> None:
    out = _latex_out(tmp_path, UNDEFINED, generated="\\newcommand{\\MacroF}{88.1}\n")
    assert pipeline._missing_generated(out) == "the macro `\\TestAccuracy`"


def test_a_macro_the_results_define_is_not_blamed_on_them(tmp_path: Path) -> None:
    out = _latex_out(tmp_path, UNDEFINED, generated="\\newcommand{\\TestAccuracy}{88.1}\n")
    assert pipeline._missing_generated(out) == ""


def test_a_missing_generated_table_or_figure_is_named(tmp_path: Path) -> None:
    out = _latex_out(tmp_path, "! LaTeX Error: File `generated/statistics_table.tex' not found.\n")
    assert pipeline._missing_generated(out) == "`generated/statistics_table.tex`"
    out2 = _latex_out(tmp_path / "b", "! LaTeX Error: File `seed_comparison.pdf' not found.\n")
    assert pipeline._missing_generated(out2) == "`seed_comparison.pdf`"


def test_other_latex_failures_stay_latex_errors(tmp_path: Path) -> None:
    out = _latex_out(tmp_path, "! Missing $ inserted.\n")
    assert pipeline._missing_generated(out) == ""
