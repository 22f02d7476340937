"""Progress reporting that stays quiet where nobody is watching (pipes, CI, log files).

Bars (training through the Trainer's tqdm, test-set scoring, long predictions) appear only
on an interactive terminal outside CI; elsewhere a few ``[lora_agnews]`` lines on stderr say
what is happening, so logs stay readable and free of carriage-return noise.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")

_CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD")


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def in_ci() -> bool:
    return any(_truthy(os.environ.get(name, "")) for name in _CI_VARIABLES)


def interactive() -> bool:
    """True on a terminal outside CI; ``LORA_AGNEWS_PROGRESS=1/0`` forces it on or off."""
    forced = os.environ.get("LORA_AGNEWS_PROGRESS")
    if forced is not None:
        return _truthy(forced)
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr (notebook kernels, capture)
        tty = False
    return tty and not in_ci()


def bar(items: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None) -> Iterable[T]:
    """A tqdm bar on a terminal, the plain iterable elsewhere."""
    if not interactive():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, file=sys.stderr, disable=False)


def quiet_libraries() -> None:
    """Turn off the download/map bars of datasets and huggingface_hub when not interactive.

    Where bars are wanted, the project's own switch wins over tqdm's ``TQDM_DISABLE`` (set in many
    shells and CI images), which would otherwise hide the Trainer's bars that
    ``LORA_AGNEWS_PROGRESS=1`` asked for.
    """
    if interactive():
        if _truthy(os.environ.get("LORA_AGNEWS_PROGRESS", "")):
            os.environ.pop("TQDM_DISABLE", None)
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:  # optional: an older hub client without the switch
        pass
    if "datasets" in sys.modules:
        try:
            sys.modules["datasets"].disable_progress_bars()
        except Exception:
            pass
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def say(message: str) -> None:
    """One progress line on stderr (always shown: the pipeline's step-by-step log)."""
    print(f"[lora_agnews] {message}", file=sys.stderr, flush=True)
