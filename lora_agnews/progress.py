"""Progress reporting that stays quiet where nobody is watching (pipes, CI, log files)."""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def interactive() -> bool:
    """True on a terminal outside CI; ``LORA_AGNEWS_PROGRESS=1/0`` forces it on or off."""
    forced = os.environ.get("LORA_AGNEWS_PROGRESS")
    if forced is not None:
        return forced not in ("0", "false", "no", "")
    return sys.stderr.isatty() and not os.environ.get("CI")


def bar(items: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None) -> Iterable[T]:
    """A tqdm bar on a terminal, the plain iterable elsewhere."""
    if not interactive():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, leave=False)


def say(message: str) -> None:
    """One progress line on stderr (always shown: the pipeline's step-by-step log)."""
    print(f"[lora_agnews] {message}", file=sys.stderr, flush=True)
