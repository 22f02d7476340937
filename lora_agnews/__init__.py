"""lora-agnews: LoRA fine-tuning of RoBERTa on AG News under one million trainable parameters.

Layers, lowest first; each imports only the layers below it (tests/test_imports.py checks):

- ``core``: one training run from config to ``metrics.json`` (``paths``, ``tasks``, ``config``, ``dataset``,
  ``tokens``, the model's ``encoders``, ``heads``, ``methods``, ``build`` and ``budget``, ``evaluate``, ``runs``,
  ``archive``, ``restore``, ``adapter``, ``trainer``, ``train``, ...; ``export`` beside them)
- ``studies``: what is built from many runs (``experiments``, ``merging``, ``merging_study``,
  ``quantize_study``, ``baselines``, ``audit``, ...)
- ``reporting``: prose, tables, figures and book pages from results (``text``, ``plots``, ``book_pages``, ...)
- ``pipeline`` (papermill -> book -> report) and ``cli`` (``python -m lora_agnews``) on top.
"""

__version__ = "0.1.0"
