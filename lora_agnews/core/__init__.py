"""The core run: one training run from a config to ``metrics.json``, and everything it stands on.

Modules, each importing only those before it, read in this order to follow a run from the command
line to ``metrics.json``: ``paths`` (where files live, how results are written and read, how progress is
told), ``tasks/`` (what each task is, its label kind, where its rows come from), ``config`` (what a run is:
the frozen configuration, the methods), ``dataset`` (a configuration's rows, split), ``tokens`` (token ids
and padded batches), ``model`` (the model under the budget), ``evaluate`` (scoring), ``runs`` (run directories,
records, keys), ``adapter`` (what a run saves, and how it is loaded and scored again) and ``train`` (a
complete run: restored from the archive or trained). ``export`` (a merged, standalone model) sits beside
``train``, off the training path.

May import: nothing above it in the package (never ``studies``, ``reporting``, ``pipeline``, ``cli``).
"""
