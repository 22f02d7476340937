"""Where a run computes and in which precision: the device, bf16 detection, and the precision scoring uses.

``auto`` precision is bf16 on CUDA and on CPUs with bf16 units, fp32 elsewhere; the audit re-scores a record in a
precision it chooses (:func:`scoring_in`, :func:`faithful_precision`) through the very functions that scored it.
May import: ``hardware``, ``config``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator

import torch

from . import hardware
from .config import Config, ConfigError


def device_for(cfg: Config) -> torch.device:
    """The device a run uses; ``cuda`` where torch sees none is refused here, not by a CUDA error mid-run.

    Not part of :func:`~lora_agnews.core.config.validate`: a config recorded on a GPU machine must still load on
    a CPU one (to score its adapter, to build the book); only running on that device needs CUDA.
    """
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("parameter 'device' is 'cuda', but torch sees no CUDA device here "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). "
                          "Use -p device auto (CUDA when present, else CPU) or -p device cpu.")
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """AMX or AVX512-BF16, not capped below them by ``ONEDNN_MAX_CPU_ISA``: bf16 autocast is then 2x or more faster
    than fp32 on CPU; without bf16 units it is emulated, several times slower than fp32."""
    if os.environ.get("LORA_AGNEWS_NO_BF16") or not hardware.has_bf16_units():
        return False
    with contextlib.suppress(Exception):
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


# The precision every scoring in this context uses, whatever the configuration says (:func:`scoring_in`).
_SCORING: contextvars.ContextVar[str | None] = contextvars.ContextVar("lora_agnews_scoring_precision", default=None)


@contextlib.contextmanager
def scoring_in(precision: str | None) -> Iterator[None]:
    """Within the block, :func:`resolve_precision` answers ``precision`` (None: as configured)."""
    token = _SCORING.set(precision)
    try:
        yield
    finally:
        _SCORING.reset(token)


def resolve_precision(cfg: Config, device: torch.device | None = None) -> str:
    """``auto``: bf16 on CUDA and on CPUs with bf16 units, fp32 elsewhere (inside :func:`scoring_in`: its precision)."""
    forced = _SCORING.get()
    if forced is not None:
        return forced
    if cfg.precision != "auto":
        return cfg.precision
    device = device or device_for(cfg)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def native_here(precision: str, device: torch.device) -> bool:
    """Whether ``device`` computes ``precision`` with its own units (fp32 everywhere; bf16 on CUDA with bf16 and on
    CPUs with bf16 units; fp16 on CUDA only)."""
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    return precision == "bf16" and cpu_supports_bf16()


def faithful_precision(recorded: str, device: torch.device) -> str:
    """The precision to re-score a record computed in ``recorded`` with on ``device``: the same where it is native
    here, else fp32, the fastest faithful one (bf16 emulated without bf16 units is about 7x slower than fp32 and no
    closer to another machine's bf16 rounding)."""
    return recorded if native_here(recorded, device) else "fp32"
