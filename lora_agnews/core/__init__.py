"""The core run: one training run from a config to ``metrics.json``, and everything it stands on.

Each module imports only those before it; read in this order to follow a run from the command line to
``metrics.json``: ``paths`` (where files live, how results are written and read, how progress is told),
``families`` (encoder families and where an adapter goes in each), ``methods`` (the PEFT methods, one entry
each), ``tasks/`` (what each task is, its label kind, where its rows come from), ``config`` (what a run is: the
frozen configuration), ``checkpoints`` (which encoder checkpoint a name means), ``dataset`` (a configuration's
rows, split), ``tokens`` (token ids and padded batches), the model under the budget: ``encoders`` (the base
encoder and its tokenizer), ``precision`` (device and precision), ``heads``, ``quantize`` (4- and 8-bit bases),
``build`` (the trainable model, and merging it back) and ``budget`` (exact counts and the budget); then
``evaluate`` (scoring), ``runs`` (run directories, records, keys), ``archive`` and ``restore`` (the committed
archive of complete runs, torch-free), ``launch`` (distributed launches), ``adapter`` (what a run saves, and how
it is loaded again), ``card`` (its model card), ``distill`` (a teacher's logits), ``score`` (the model a run is
scored with, and a saved run scored again), ``trainer`` (the Hugging Face Trainer as a run uses it) and ``train``
(a complete run: restored from the archive or trained). ``export`` (a merged, standalone model) sits beside
``train``, off the training path.

May import: nothing above it in the package (never ``studies``, ``reporting``, ``pipeline``, ``cli``).
"""
