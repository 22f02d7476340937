"""Distributed launches (torchrun / accelerate launch): joining the process group, work done by rank 0 only.

Under a launch every rank runs the same ``train`` call; the run directory is claimed, checked and written by
rank 0, and what rank 0 finds is shared with the other ranks, so no rank decides alone. Without a launch (one
process) every function here is a plain call. May import ``runs``.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable

import torch

from . import runs


def init_distributed(device: torch.device) -> None:
    """Join the process group early under torchrun / accelerate launch (WORLD_SIZE > 1).

    The run directory must be claimed by rank 0 before any rank looks for checkpoints, which
    needs a collective before the Trainer exists; the Trainer's accelerate state then reuses
    this group (gloo on CPU, nccl on CUDA).
    """
    if runs.world_size() <= 1 or not torch.distributed.is_available() or torch.distributed.is_initialized():
        return
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    atexit.register(_destroy_distributed)


def _destroy_distributed() -> None:
    if _joined():
        torch.distributed.destroy_process_group()


def _joined() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world() -> int:
    """The processes that train together: the process group's size once joined, else the launch's."""
    return max(1, torch.distributed.get_world_size() if torch.distributed.is_initialized() else runs.world_size())


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 only; its result (or its exception) is shared with every rank."""
    if not _joined() or torch.distributed.get_world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if torch.distributed.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # re-raised on every rank, so no rank waits forever
            box[0] = ("error", exc)
    torch.distributed.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def is_main_process() -> bool:
    if _joined():
        return torch.distributed.get_rank() == 0
    return runs.rank() == 0
