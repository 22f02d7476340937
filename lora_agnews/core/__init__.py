"""The core run: one training run from a config to ``metrics.json``, and everything it stands on.

Foundation (``paths``, ``progress``, ``artifacts``, ``tables``, ``tasks``, ``placements``, ``registry``),
configuration and data (``config``, ``sources``, ``data``, ``multilabel``), the model (``model``,
``quantize``, ``heads``, ``methods``, ``counting``, ``budget``), and the run itself (``train``,
``evaluate``, ``multilabel_eval``, ``runs``, ``adapter``, ``distill``, ``export``).

May import: nothing above it in the package (never ``studies``, ``reporting``, ``pipeline``, ``cli``).
"""
