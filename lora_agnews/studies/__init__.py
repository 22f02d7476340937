"""Studies built from many core runs: seeds and ablations (``experiments``, ``comparison``), adapter
merging (``merging``, ``multitask``, ``merging_study``), quantization (``quantize_study``), baselines,
the reproduction audit (``audit``) and data exploration (``explore``).

May import: ``core`` and other studies; never ``reporting``, ``pipeline`` or ``cli``.
"""
