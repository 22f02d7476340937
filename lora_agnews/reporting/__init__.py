"""Turning results into prose, tables, figures and book pages: ``text`` (sentences and numbers for the
report), ``ablation_reporting``, ``merge_reporting``, ``plots``, ``multilabel_plots``, ``book_pages``.

May import: ``core`` and ``studies``; never ``pipeline`` or ``cli``.
"""
