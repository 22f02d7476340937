"""lora-agnews: LoRA fine-tuning of RoBERTa on AG News under one million trainable parameters.

Modules: ``config`` (frozen run config, profiles), ``data`` (AG News sources, splits,
dynamic padding), ``placements`` (LoRA target roles and presets per encoder family),
``model`` (names, configs, tokenizer, base encoder, device), ``heads`` (classification heads),
``methods`` (PEFT methods, building and merging), ``counting`` (exact parameter counts), ``budget``,
``train`` (Trainer), ``evaluate`` (metrics), ``adapter`` (save/load/predict), ``runs``
(run records), ``artifacts`` (atomic files, figures, LaTeX), ``plots``, ``pipeline``
(papermill -> book -> report), ``experiments`` (seeds, ablations, statistics), ``cli``.
"""

__version__ = "0.1.0"
