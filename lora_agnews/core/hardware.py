"""The machine a number is computed on: its CPU kind, whether it has bf16 units, and its GPU.

Two machines of one kind give identical predictions for the same run; two kinds may round differently in the
last bits (the audit's rule across machines, :mod:`lora_agnews.studies.agreement`, says how far). The kind is
read from the CPU's flags and lowered by oneDNN's own cap, ``ONEDNN_MAX_CPU_ISA``: with ``AVX2`` there, any
machine computes as one without bf16 units (oneDNN runs the bf16 matmuls without them), so the project
treats it as one, and tests and readers can play such a machine anywhere.

May import: nothing of the package (torch only where it is already imported).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

# The CPU feature that decides how bf16 and fp32 matmuls are computed, best first.
CPU_KINDS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"), ("avx2", "AVX2"))
KIND_ORDER = ("other", "AVX2", "AVX512", "AVX512-BF16", "AMX")  # lowest first
BF16_KINDS = ("AMX", "AVX512-BF16")  # kinds with bf16 units: bf16 autocast is their fast path
ISA_ENV = "ONEDNN_MAX_CPU_ISA"
# oneDNN's ISA names (dnnl_cpu_isa_t, both spellings of v3.x) and the kind each caps a machine at.
ISA_CAPS = {"SSE41": "other", "AVX": "other", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2",
            "AVX512_CORE": "AVX512", "AVX512_CORE_VNNI": "AVX512",
            "AVX512_CORE_BF16": "AVX512-BF16", "AVX512_CORE_FP16": "AVX512-BF16", "AVX10_1_512": "AVX512-BF16",
            "AVX512_CORE_AMX": "AMX", "AVX10_1_512_AMX": "AMX", "AVX512_CORE_AMX_FP16": "AMX",
            "AVX10_1_512_AMX_FP16": "AMX", "DEFAULT": "AMX", "ALL": "AMX"}


def cpu_flags() -> tuple[str, set[str]]:
    """The CPU's model name and flags (``/proc/cpuinfo``; none where it cannot be read)."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
            elif name.strip() == "flags":
                flags = set(value.split())
                break
    return model, flags


def isa_cap() -> str | None:
    """The kind ``ONEDNN_MAX_CPU_ISA`` caps this process at, or None where it is unset or unknown."""
    value = os.environ.get(ISA_ENV, "").strip().upper()
    return ISA_CAPS.get(value) if value else None


def cpu_kind() -> str:
    """This process's CPU kind: the best of :data:`CPU_KINDS` the CPU has, lowered to oneDNN's cap if one is set."""
    _, flags = cpu_flags()
    kind = next((label for flag, label in CPU_KINDS if flag in flags), "other")
    cap = isa_cap()
    if cap is not None and KIND_ORDER.index(cap) < KIND_ORDER.index(kind):
        return cap
    return kind


def has_bf16_units() -> bool:
    """Whether this process computes bf16 natively on the CPU (AMX or AVX512-BF16, not capped below them)."""
    return cpu_kind() in BF16_KINDS


def gpu_name() -> str:
    """The first CUDA device's name where torch is loaded and sees one, else ``none``."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "none"


def machine() -> dict[str, str]:
    """The CPU's model and kind and the GPU's model: where a run was computed, for its record."""
    model, _ = cpu_flags()
    return {"cpu": model, "cpu_kind": cpu_kind(), "gpu": gpu_name()}


def kind_of(machine_record: dict[str, str] | None) -> str:
    """One word for a recorded machine's kind: its GPU where it had one, else its CPU kind (``unknown`` if unrecorded)."""
    m = machine_record or {}
    if m.get("gpu") not in (None, "none", "unknown", ""):
        return f"GPU {m['gpu']}"
    return m.get("cpu_kind") or "unknown"
