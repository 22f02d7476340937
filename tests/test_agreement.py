"""The rule that decides whether a re-scored model reproduces its record, on this machine kind or another one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_agnews.core import hardware
from lora_agnews.core.precision import cpu_supports_bf16, faithful_precision, resolve_precision, scoring_in
from lora_agnews.reporting import audit_text
from lora_agnews.studies import audit
from lora_agnews.studies.agreement import CROSS_TOLERANCE, EXACT_TOLERANCE, Setting, agree, margins, near_tie_bound

AMX_BF16, AMX_FP32 = Setting("AMX", "bf16"), Setting("AMX", "fp32")
AVX2_FP32, AVX512_BF16 = Setting("AVX2", "fp32"), Setting("AVX512-BF16", "bf16")
H100_BF16 = Setting("GPU NVIDIA H100 80GB HBM3", "bf16")


def _logits() -> np.ndarray:
    """Four rows: three clear (margin 3), one near-tie (margin 0.01)."""
    return np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.01, 0.0]])


def test_the_same_setting_must_give_identical_labels_within_the_precisions_tolerance() -> None:
    recorded = _logits()
    assert agree(recorded, recorded + 1e-6, AVX2_FP32, AVX2_FP32).reproduced
    assert not agree(recorded, recorded + 1e-3, AVX2_FP32, AVX2_FP32).reproduced  # fp32's tolerance is 1e-4
    assert agree(recorded, recorded + 1e-3, AMX_BF16, AMX_BF16).reproduced
    tie_flipped = recorded.copy()
    tie_flipped[3, 0] += 0.02
    exact = agree(recorded, tie_flipped, AMX_BF16, AMX_BF16)
    assert exact.exact and exact.differing == 1 and not exact.reproduced  # no flip at all on the same kind


@pytest.mark.parametrize("computed,here", [(AMX_BF16, AVX2_FP32), (AVX2_FP32, AMX_BF16), (H100_BF16, AVX2_FP32),
                                           (AMX_BF16, AVX512_BF16), (AMX_BF16, AMX_FP32)])
def test_across_machines_a_label_may_differ_only_on_a_near_tie(computed: Setting, here: Setting) -> None:
    recorded = _logits()
    noisy = recorded + np.random.default_rng(0).normal(0, 2e-3, recorded.shape)
    noisy[3, 0] += 0.02  # the near-tie flips
    found = agree(recorded, noisy, computed, here)
    assert not found.exact and found.differing == 1 and found.reproduced
    assert found.verdict == "reproduced within numerical noise" and found.largest_margin == pytest.approx(0.01)
    clear_flip = recorded.copy()
    clear_flip[0] = [0.0, 3.0, 0.0]  # a confident row changes its label: not noise
    bad = agree(recorded, clear_flip, computed, here)
    assert not bad.reproduced and bad.largest_margin == pytest.approx(3.0)


def test_across_machines_logits_moved_beyond_the_noise_fail_even_with_the_same_labels() -> None:
    recorded = _logits()
    shifted = recorded.copy()
    shifted[:3] *= 1.5  # an edited logits file or another head: every label the same, every logit moved
    assert not agree(recorded, shifted, AMX_BF16, AVX2_FP32).reproduced


def test_the_near_tie_bound_follows_from_the_coarser_precision() -> None:
    assert near_tie_bound(AMX_BF16, AVX2_FP32) == 2 * CROSS_TOLERANCE["bf16"]
    assert near_tie_bound(AVX2_FP32, Setting("AMX", "fp32")) == 2 * CROSS_TOLERANCE["fp32"]
    assert CROSS_TOLERANCE["fp32"] < CROSS_TOLERANCE["bf16"] and EXACT_TOLERANCE["fp32"] < CROSS_TOLERANCE["fp32"]


def test_a_multi_label_row_differs_when_any_decision_flips_and_its_margin_is_the_flipped_labels() -> None:
    thresholds = np.full((2, 3), 0.5)
    recorded = np.array([[2.0, -2.0, 0.01], [-3.0, 3.0, 3.0]])
    got = recorded.copy()
    got[0, 2] = -0.01  # a near-threshold label flips
    found = agree(recorded, got, AMX_BF16, AVX2_FP32, thresholds)
    assert found.differing == 1 and found.largest_margin == pytest.approx(0.01) and found.reproduced
    got[1, 1] = -3.0
    assert not agree(recorded, got, AMX_BF16, AVX2_FP32, thresholds).reproduced
    assert margins(recorded, thresholds)[0, 2] == pytest.approx(0.01)


def test_the_audit_check_names_both_settings_and_the_largest_margin_when_it_fails() -> None:
    labels = np.array([0, 1, 2, 1])
    recorded = _logits()
    flipped = recorded.copy()
    flipped[0] = [0.0, 3.0, 0.0]
    check = audit.compare("runs/x", recorded, flipped, labels, AMX_BF16, AVX2_FP32)
    assert not check.reproduced and check.recorded_accuracy == 1.0 and check.reproduced_accuracy == 0.75
    assert check.differing == 1 and check.largest_margin == pytest.approx(3.0)
    assert all(word in check.line() for word in ("runs/x", "100.00%", "75.00%", "AMX (bf16)", "AVX2 (fp32)"))
    with pytest.raises(audit.AuditError, match="test rows changed"):
        audit.compare("r", recorded, recorded[:2], labels, AMX_BF16, AMX_BF16)


def test_a_metrics_file_that_disagrees_with_its_logits_fails() -> None:
    labels = np.array([0, 1, 2, 1])
    recorded = _logits()
    assert audit.compare("r", recorded, recorded, labels, AMX_BF16, AMX_BF16, recorded_metric=1.0).reproduced
    assert not audit.compare("r", recorded, recorded, labels, AMX_BF16, AMX_BF16, recorded_metric=0.75).reproduced


# --------------------------------------------------------------------------- the machine at hand
@pytest.fixture
def amx_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this CPU is, one with AMX (the archive's computing machine)."""
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("Test Xeon", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    monkeypatch.delenv(hardware.ISA_ENV, raising=False)
    monkeypatch.delenv("LORA_AGNEWS_NO_BF16", raising=False)


def test_onednn_capped_below_bf16_plays_a_cpu_without_bf16_units(amx_cpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hardware.cpu_kind() == "AMX" and hardware.has_bf16_units()
    for cap, kind in (("AVX2", "AVX2"), ("avx512_core", "AVX512"), ("AVX512_CORE_BF16", "AVX512-BF16"),
                      ("AVX512_CORE_AMX", "AMX")):
        monkeypatch.setenv(hardware.ISA_ENV, cap)
        assert hardware.cpu_kind() == kind and hardware.machine()["cpu_kind"] == kind
    monkeypatch.setenv(hardware.ISA_ENV, "AVX2")
    assert not hardware.has_bf16_units() and not cpu_supports_bf16()
    cfg = type("Cfg", (), {"precision": "auto", "device": "cpu"})()
    assert resolve_precision(cfg, torch.device("cpu")) == "fp32"
    assert faithful_precision("bf16", torch.device("cpu")) == "fp32"  # not bf16 emulated, 7x slower
    assert faithful_precision("fp32", torch.device("cpu")) == "fp32"


def test_a_cap_never_raises_a_machine_above_what_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("Old laptop", {"avx2"}))
    monkeypatch.setenv(hardware.ISA_ENV, "AVX512_CORE_AMX")
    assert hardware.cpu_kind() == "AVX2" and not hardware.has_bf16_units()


def test_inside_scoring_in_every_scoring_uses_the_chosen_precision(amx_cpu: None) -> None:
    cfg = type("Cfg", (), {"precision": "bf16", "device": "cpu"})()
    with scoring_in("fp32"):
        assert resolve_precision(cfg, torch.device("cpu")) == "fp32"
    assert resolve_precision(cfg, torch.device("cpu")) == "bf16"


def test_a_record_says_where_and_in_what_it_was_computed(amx_cpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = {"restored": {"computed": {"machine": {"cpu": "EPYC", "cpu_kind": "AVX2", "gpu": "NVIDIA H100"}}}}
    assert audit.computed_setting(cuda, None, None) == Setting("GPU NVIDIA H100", "bf16")
    amx = {"machine": {"cpu": "Xeon", "cpu_kind": "AMX", "gpu": "none"}}
    assert audit.computed_setting(amx, "bf16", None) == AMX_BF16
    monkeypatch.setenv(hardware.ISA_ENV, "AVX2")
    assert audit.here_setting("fp32", "cpu") == AVX2_FP32
    assert audit.computed_setting({}, None, None) == AVX2_FP32  # computed here, no record of where: this machine


def test_the_sample_is_all_rows_when_full_or_few_and_the_same_draw_every_time() -> None:
    assert audit.sample("runs/x", 3800, full=True) is None and audit.sample("runs/x", 50, full=False) is None
    rows = audit.sample("runs/x", 3800, full=False)
    assert len(rows) == audit.SAMPLE_ROWS and np.array_equal(rows, audit.sample("runs/x", 3800, full=False))
    assert not np.array_equal(rows, audit.sample("runs/y", 3800, full=False))


def test_a_restore_re_merges_a_seeded_sample_of_the_merges_and_names_the_rest() -> None:
    from lora_agnews.studies.merging import ALL_COMBINATIONS, NEEDS_DENSITY, make_combination

    combos = [make_combination(k, density=0.5 if k in NEEDS_DENSITY else None) for k in ALL_COMBINATIONS]
    kept, skipped = audit.sample_merges(combos)
    assert len(kept) == audit.SAMPLE_MERGES and len(kept) + len(skipped) == len(combos)
    assert [c for c in combos if c in kept] == kept and set(map(id, kept)).isdisjoint(map(id, skipped))
    assert audit.sample_merges(combos) == (kept, skipped)  # the same draw every time
    assert audit.sample_merges(combos[:audit.SAMPLE_MERGES]) == (combos[:audit.SAMPLE_MERGES], [])


# --------------------------------------------------------------------------- a run audited on another machine kind
@pytest.mark.parametrize("computed_as,audited_as,precision", [
    ({"cap": "AVX2"}, {"cap": None}, "fp32"),  # an fp32 archive from a laptop, restored on an AMX machine
    ({"cap": None}, {"cap": "AVX2"}, "bf16"),  # a bf16 archive from an AMX machine, restored on a laptop
], ids=["fp32 on AVX2 -> AMX", "bf16 on AMX -> AVX2"])
def test_a_smoke_run_audited_on_another_machine_kind_is_held_to_the_rule_across_machines(
        isolated_outputs: object, monkeypatch: pytest.MonkeyPatch, computed_as: dict, audited_as: dict,
        precision: str) -> None:
    from lora_agnews.core import config, paths
    from lora_agnews.core.train import train

    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("Test Xeon", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))

    def play(cap: str | None) -> None:
        if cap:
            monkeypatch.setenv(hardware.ISA_ENV, cap)
        else:
            monkeypatch.delenv(hardware.ISA_ENV, raising=False)

    play(computed_as["cap"])
    cfg = config.load("smoke", {"epochs": 1.0, "max_train_samples": 32, "max_eval_samples": 32,
                                "precision": precision})
    run_dir = paths.runs_dir("smoke") / "main"
    train(cfg, run_dir)
    play(audited_as["cap"])
    record = audit.audit_profile("smoke")
    check = record["checks"][0]
    assert record["all_reproduced"] and not check["exact"] and check["computed"].endswith(f"({precision})")
    assert check["here"] == ("AMX (fp32)" if precision == "fp32" else "AVX2 (fp32)")
    assert "within numerical noise" in audit_text.summary(record) and "AVX2" in audit_text.summary(record) + check["computed"]


def test_a_sample_re_scored_in_other_batches_may_flip_only_near_ties_under_the_exact_rule() -> None:
    recorded = np.array([[0.0, 0.01], [0.0, 3.0]], dtype=np.float32)  # row 0 a near-tie (margin 0.01), row 1 not
    near_tie_flip = recorded + np.array([[0.02, 0.0], [0.0, 0.0]], dtype=np.float32)
    assert not agree(recorded, near_tie_flip, AMX_BF16, AMX_BF16).reproduced  # the rows of the record
    assert agree(recorded, near_tie_flip, AMX_BF16, AMX_BF16, rebatched=True).reproduced
    far_flip = recorded + np.array([[0.0, 0.0], [0.04, -0.04]], dtype=np.float32) * 50  # moved by units
    assert not agree(recorded, far_flip, AMX_BF16, AMX_BF16, rebatched=True).reproduced
