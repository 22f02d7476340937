"""Command line: ``python -m lora_agnews {params,budget,train,predict,run,...}``.

``-p KEY VALUE`` takes the same keys as the notebooks' parameters; errors are printed as one
line that names the problem and the fix, with exit status 2, and never a traceback for bad input.

All command-line glue is here, at the top of the imports: this module imports the others
(lazily, so ``--help`` is instant), and none of them imports it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .core import config as config_mod


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="demo", help="profile in configs/ (default: demo)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override one parameter (same keys as the notebooks' parameters)")


def load_config(args: argparse.Namespace) -> config_mod.Config:
    overrides: dict[str, Any] = {}
    for key, value in args.param:
        config_mod.coerce(key, value)  # names the key on error
        overrides[key] = value
    return config_mod.load(args.profile, overrides)


# --------------------------------------------------------------------------- commands
def cmd_params(args: argparse.Namespace) -> int:
    from .core.budget import count_trainable, format_breakdown

    cfg = load_config(args)
    breakdown = count_trainable(cfg)
    from .core.card import method_summary

    if cfg.method == "lora":
        print(f"model: {cfg.model_name}  head: {cfg.head}  LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} "
              f"variant={cfg.lora_variant} targets={cfg.lora_targets}" + (f" layers={cfg.lora_layers}" if cfg.lora_layers else ""))
    else:
        print(f"model: {cfg.model_name}  head: {cfg.head}  method: {method_summary(cfg)})"
              + (f" layers={cfg.lora_layers}" if cfg.lora_layers else ""))
    print(format_breakdown(breakdown, cfg.budget))
    if breakdown["total"] > cfg.budget:
        print(f"over budget by {breakdown['total'] - cfg.budget:,}", file=sys.stderr)
        return 1
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    from .core.budget import budget_table, format_budget_table

    cfg = load_config(args)
    targets = [t.strip() for t in args.targets.split(";") if t.strip()] or [cfg.lora_targets]
    heads = args.heads.split(",") if args.heads else ["default", "linear", "lora-dense"]
    for head in heads:
        config_mod.coerce("head", head)
        if head not in config_mod.CHOICES["head"]:
            raise config_mod.ConfigError(f"unknown head '{head}'; choose from {', '.join(config_mod.CHOICES['head'])}.")
    if args.methods:
        from .core.budget import format_method_table, method_table

        methods = (config_mod.CHOICES["method"] if args.methods == "all"
                   else [m.strip() for m in args.methods.split(",") if m.strip()])
        for method in methods:
            if method not in config_mod.CHOICES["method"]:
                raise config_mod.ConfigError(f"unknown method '{method}'; choose from "
                                             f"{', '.join(config_mod.CHOICES['method'])} (or all).")
        print(f"model: {cfg.model_name}" + (f"  layers: {cfg.lora_layers}" if cfg.lora_layers else ""))
        print(format_method_table(method_table(cfg, methods, targets, heads), cfg.budget))
        return 0
    print(f"model: {cfg.model_name}  variant: {cfg.lora_variant}" + (f"  layers: {cfg.lora_layers}" if cfg.lora_layers else ""))
    print(format_budget_table(budget_table(cfg, targets, heads), cfg.budget))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .core.train import train

    cfg = load_config(args)
    metrics = train(cfg, Path(args.out), overwrite=args.overwrite, owned=args.owned)
    if metrics:
        if metrics.get("kind") == "multi_label":
            print(f"micro_f1: {metrics['micro_f1']:.4f}")
            print(f"subset_accuracy: {metrics['subset_accuracy']:.4f}")
        else:
            print(f"accuracy: {metrics['accuracy']:.4f}")
        print(f"macro_f1: {metrics['macro_f1']:.4f}")
        print(f"trainable_params: {metrics['trainable_params']}")
        print(f"metrics: {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .core.adapter import predict_texts
    from .core.tasks.registry import model_labels

    texts = [t for t in args.texts if t.strip()]
    if args.file:
        if args.file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            path = Path(args.file)
            if not path.is_file():
                raise FileNotFoundError(f"--file {path} does not exist; give a text file with one headline per line.")
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise ValueError(f"--file {path} is not UTF-8 text (byte {exc.start}); re-encode it as UTF-8.") from None
        texts += [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError('nothing to classify: give texts as arguments ("headline" ...) or --file FILE.')
    if args.threshold is not None:
        from .core.tasks.multilabel_scores import check_threshold

        check_threshold(args.threshold, "--threshold")
    model, tokenizer, cfg = _predictor(Path(args.adapter), args.task)
    names = model_labels(model)  # the classes of the task the adapter was trained on
    probs = predict_texts(model, tokenizer, cfg, texts)
    from .core.tasks.label_sets import is_multi_label_model

    if is_multi_label_model(model):
        from .core.adapter import print_predictions

        from .studies.merging import MANIFEST_FILE, merged_thresholds

        merged = (Path(args.adapter) / MANIFEST_FILE).is_file()
        record = merged_thresholds(Path(args.adapter), args.task) if merged else None
        print_predictions(texts, probs, names, Path(args.adapter), args.threshold, args.json, record)
        return 0
    if args.json:
        rows = [{"text": text, "label": names[int(row.argmax())], "label_id": int(row.argmax()),
                 "probabilities": {name: float(p) for name, p in zip(names, row)}} for text, row in zip(texts, probs)]
        print(json.dumps(rows, indent=1))
        return 0
    for text, row in zip(texts, probs):
        best = int(row.argmax())
        shown = ", ".join(f"{name}={p:.3f}" for name, p in zip(names, row))
        print(f"{names[best]}\t{row[best]:.3f}\t{shown}\t{text}")
    return 0


def _predictor(adapter_dir: Path, task: str) -> tuple[Any, Any, config_mod.Config]:
    """The model ``predict`` uses: a saved adapter, or one task of a merged adapter (``--task``)."""
    from .core.adapter import check_adapter_dir, load_adapter
    from .studies.merging import MANIFEST_FILE, MergingError, load_merged, merged_tasks

    if (adapter_dir / MANIFEST_FILE).is_file():
        if not task:
            raise MergingError(f"{adapter_dir} merges the tasks {', '.join(merged_tasks(adapter_dir))}: say which "
                               f"one to classify for with --task NAME (each task keeps its own head).")
        return load_merged(adapter_dir, task)
    check_adapter_dir(adapter_dir)  # a clear message before any model is built
    model, tokenizer, cfg = load_adapter(adapter_dir)
    if task:
        from .studies.merging import task_name

        if task_name(cfg) != task:
            raise MergingError(f"{adapter_dir} was trained on task {task_name(cfg)!r}, not {task!r}; drop --task, "
                               f"or pass a merged adapter directory (python -m lora_agnews merge) that holds {task!r}.")
    return model, tokenizer, cfg


def cmd_merge(args: argparse.Namespace) -> int:
    """``merge --adapters A B ... --combination KIND [--density D] [--weights w1,w2,...] --out DIR``."""
    from .studies.merging import merge_adapters, read_manifest

    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()] if args.weights else None
    except ValueError:
        raise ValueError(f"--weights must be comma-separated numbers, one per adapter (e.g. 1,1,1); "
                         f"got {args.weights!r}.") from None
    out = merge_adapters([Path(a) for a in args.adapters], args.combination, weights, args.density, Path(args.out),
                         svd_rank=args.svd_rank, seed=args.seed)
    manifest = read_manifest(out)
    tasks = ", ".join(f"{t['name']} ({len(t['labels'])} classes)" for t in manifest["tasks"])
    print(f"merged {len(manifest['tasks'])} adapters with {args.combination} (rank {manifest['rank']}): {tasks}")
    print(f"trainable parameters: {manifest['merged_lora_params']:,} merged LoRA + each task's head "
          f"(all heads: {manifest['all_heads_params']:,})")
    print(f"use: python -m lora_agnews predict --adapter {out} --task {manifest['tasks'][0]['name']} \"TEXT\"")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``export --adapter RUN/adapter --out DIR``: the merged model as a plain transformers checkpoint."""
    from .core.export import ATOL, RTOL, export

    result = export(Path(args.adapter), Path(args.out), overwrite=args.overwrite)
    print(f"wrote {result.architecture} ({', '.join(result.labels)}) -> {result.out_dir}")
    print(f"self-check: pipeline logits equal predict's within {ATOL:g} + {RTOL:g} x |logit| "
          f"(largest difference {result.max_abs_diff:.2g})")
    print(f'use: transformers.pipeline("text-classification", model="{result.out_dir}")')
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``run --profile NAME [--steps a,b] [-p KEY VALUE ...] [--engine ray ...]``: the pipeline."""
    from .pipeline import PipelineError, run

    overrides = {key: config_mod.coerce(key, value) for key, value in args.param}
    if args.engine != "local":
        return _run_on_engine(args, overrides)
    try:
        run(args.profile, args.steps, overrides, restore_only=args.restore_only)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_on_engine(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """The plan's models computed on ``--engine`` first (one driver per results tree), then the pipeline."""
    from . import engines
    from .pipeline import PipelineError, absolute_paths, run

    if args.restore_only:
        raise config_mod.ConfigError("--restore-only trains nothing, so it needs no engine; leave out --engine.")
    config_mod.load(args.profile, overrides)  # unknown keys, wrong types: refused before a cluster starts
    with engines.driver_lock(args.profile):
        backend = engines.backend(args.engine, args.address, args.workers, args.cpus_per_run)
        try:
            engines.compute(args.profile, absolute_paths(overrides), backend, retries=args.retries)
        except engines.EngineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            getattr(backend, "close", lambda: None)()
        try:
            run(args.profile, args.steps, overrides)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan --profile NAME [-p KEY VALUE ...] [--json] [--wide]``: every model the notebooks need, and its state."""
    import json

    from . import plan

    overrides = {key: config_mod.coerce(key, value) for key, value in args.param}
    made = plan.make(args.profile, overrides)
    print(json.dumps(plan.as_dict(made), indent=1) if args.json else "\n".join(plan.lines(made, wide=args.wide)))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``reproduce --profile NAME [-p KEY VALUE ...]``: retrain every run here, compare with the archive, render."""
    from .pipeline import PipelineError, reproduce

    overrides = {key: config_mod.coerce(key, value) for key, value in args.param}
    try:
        reproduce(args.profile, overrides, retrain=not args.compare_only)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .studies.experiments import run_ablation

    frame = run_ablation(load_config(args))
    cols = ["name", "trainable_params", "status", "accuracy", "macro_f1", "train_seconds", "pareto", "lr_search"]
    print(frame[cols].to_string(index=False))
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from .studies.experiments import run_seeds

    result = run_seeds(load_config(args))
    for key in ("chosen", "baseline"):
        r = result[key]
        lo, hi = r["bootstrap_ci"]
        print(f"{key:<9} {r['name']:<40} params {r['trainable_params']:>9,}  accuracy {100 * r['mean']:.2f} "
              f"± {100 * r['std']:.2f} (n={len(r['seeds'])}; 95% CI {100 * lo:.2f}-{100 * hi:.2f})")
    lo, hi = result["difference"]["bootstrap_ci"]
    print(f"difference {100 * result['difference']['mean']:+.2f} points (95% CI over seeds and test rows "
          f"{100 * lo:+.2f} to {100 * hi:+.2f})")
    for m in result["mcnemar_per_seed"]:
        print(f"McNemar (seed {m['seed']}): b={m['b']} c={m['c']} p={m['p_value']:.4g} ({m['method']})")
    return 0


def cmd_quantization(args: argparse.Namespace) -> int:
    from .studies.quantize_study import run_study, table

    cfg = load_config(args)
    result = run_study(cfg)
    print(table(result).markdown())
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .studies.audit import audit_profile

    record = audit_profile(args.profile, full=args.full)
    print(f"audit: {record['reproduced']} of {record['runs']} saved models reproduce their recorded test scores "
          f"(largest |logit difference| {record['largest_abs_logit_diff']:.1e}, {record['seconds']:.0f} s)")
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    """``findings [--check]``: rewrite the README's and the guide's generated blocks from archive/ (or name those that differ)."""
    from .reporting.findings import update

    changed = update(check=args.check)
    for name in changed:
        print(f"findings: {name} {'differs from what the archive gives' if args.check else 'regenerated'}")
    if args.check and changed:
        print("findings: run `python -m lora_agnews findings` and commit the result")
        return 1
    print(f"findings: {'up to date' if not changed else f'{len(changed)} file(s) regenerated'}")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    """``archive --profile NAME [--verify N]``: add the profile's complete runs to archive/NAME, or retrain N of them."""
    from .core import archive

    if args.verify is not None:
        from .studies.verify import verify_archive

        record = verify_archive(args.profile, args.verify, args.seed)
        print(f"verify: {len(record['checks'])} archived run(s) retrained; "
              + ("identical labels where the machine kind is the same" if record["all_identical_where_expected"]
                 else "some disagree"))
        return 0
    from .reporting.findings import STUDY_RESULTS

    if args.drop_superseded:
        dropped = archive.drop_superseded(args.profile)
        for entry in dropped:
            print(f"archive: dropped {entry['id']} ({entry['path']}: {entry['changed']}; its replacement is archived)")
        print(f"archive: profile {args.profile}: {len(dropped)} superseded entr{'y' if len(dropped) == 1 else 'ies'} dropped")
        return 0
    done = archive.archive_profile(args.profile)
    kept = archive.keep_studies(args.profile, STUDY_RESULTS)
    print(f"archive: profile {args.profile}: {done['added']} entr{'y' if done['added'] == 1 else 'ies'} added, "
          f"{done['entries']} in all, {done['bytes'] / 1e6:.2f} MB in {done['path']}; study results kept: "
          f"{', '.join(kept) or 'none'}")
    return 0


def cmd_logits(args: argparse.Namespace) -> int:
    from .core.distill import write_logits_for_data

    cfg = load_config(args)
    out, n = write_logits_for_data(Path(args.teacher), cfg, Path(args.out))
    print(f"wrote teacher logits for {n:,} training texts -> {out}")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    """``site PROFILE ...``: the landing page and the built books of the profiles, in build/site."""
    from .reporting.site import build_site

    index = build_site(args.profiles)
    print(f"site: {len(args.profiles)} book(s) ({', '.join(args.profiles)}) and the landing page -> {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora_agnews", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="print the trainable-parameter breakdown (no weights, no network)")
    _common(p)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("budget", help="largest LoRA rank within the budget per target set and head")
    _common(p)
    p.add_argument("--targets", default="",
                   help="';'-separated target sets (default: the profile's lora_targets). Each set is a comma list of "
                        "roles (query, key, value, attn_out, ffn_in, ffn_out), presets (attention, all-linear), "
                        "word_embeddings or module names, e.g. 'attention;all-linear;query,value'")
    p.add_argument("--heads", default="", help="comma-separated heads (default: all)")
    p.add_argument("--methods", nargs="?", const="all", default="",
                   help="list per method (comma-separated, default all: lora, pissa, olora, adalora, vera, loha, lokr, ia3, "
                        "bitfit, layernorm, prompt), target set and head the largest size that fits")
    p.set_defaults(func=cmd_budget)

    p = sub.add_parser("train", help="train, evaluate on the test split, write DIR/metrics.json")
    _common(p)
    p.add_argument("--out", required=True, help="run directory (resumed if it holds an unfinished run)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (a directory that holds only a run this project wrote)")
    # the pipeline's own run directory trained in a fresh process (the quantization study): a run of another
    # configuration there is moved aside, as train_owned does in-process, instead of refused
    p.add_argument("--owned", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="classify headlines with a saved adapter")
    p.add_argument("--adapter", required=True, help="adapter directory (RUN/adapter)")
    p.add_argument("--file", default="", help="text file, one headline per line ('-': standard input)")
    p.add_argument("--json", action="store_true", help="print JSON (label and all probabilities per text)")
    p.add_argument("--task", default="", help="the task to classify for (required for a merged adapter directory)")
    p.add_argument("--threshold", type=float, default=None,
                   help="multi-label tasks: one decision threshold in (0, 1) for every label (default: the "
                        "thresholds the run chose on validation)")
    p.add_argument("texts", nargs="*", help="headlines to classify")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("merge", help="merge adapters of several tasks (same base) into one with PEFT's "
                                     "add_weighted_adapter; each task keeps its head")
    p.add_argument("--adapters", nargs="+", required=True, help="adapter directories (RUN/adapter), one per task")
    p.add_argument("--combination", default="ties",
                   help="linear, cat, svd, ties, dare_linear, dare_ties, magnitude_prune (PEFT's combination types)")
    p.add_argument("--density", type=float, default=None,
                   help="share of each update kept (ties, dare_*, magnitude_prune, svd variants), e.g. 0.5")
    p.add_argument("--weights", default="", help="comma-separated weight per adapter (default 1.0 each)")
    p.add_argument("--svd-rank", type=int, default=None, help="rank of an SVD merge (default: the largest input rank)")
    p.add_argument("--seed", type=int, default=0, help="seed of DARE's random masks")
    p.add_argument("--out", required=True, help="the merged adapter directory to write")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", help="write a saved adapter, merged, as a plain transformers checkpoint "
                                      "(transformers.pipeline loads it without peft)")
    p.add_argument("--adapter", required=True, help="adapter directory (RUN/adapter)")
    p.add_argument("--out", required=True, help="directory for the checkpoint (refused if not empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out (never other files)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("run", help="the whole pipeline: notebooks (papermill) -> book -> report")
    _common(p)
    p.add_argument("--steps", default="notebooks,book,report", help="comma-separated subset of notebooks,book,report")
    p.add_argument("--restore-only", action="store_true",
                   help="never train: every run must be complete in results/ or restored from archive/PROFILE; the "
                        "first one that is not stops the pipeline, naming it (sets LORA_AGNEWS_RESTORE_ONLY=1)")
    p.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local (default): each notebook trains what it needs; ray: the plan's models are computed "
                        "as Ray tasks first (pip install -e '.[ray]'), then the notebooks render")
    p.add_argument("--address", default=None, help="--engine ray: a running cluster (ray start --head; default: a "
                                                   "local one in this process)")
    p.add_argument("--workers", type=int, default=None,
                   help="--engine ray: models computed at once (default: one per GPU, else per --cpus-per-run CPUs)")
    p.add_argument("--cpus-per-run", type=int, default=1, help="--engine ray: CPUs (and torch threads) per model "
                                                               "(default 1)")
    p.add_argument("--retries", type=int, default=1, help="--engine ray: attempts after a model's first failure "
                                                          "(default 1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="every model the profile's notebooks need: what identifies it, its estimated cost, "
                                    "and whether it is complete, restorable from the archive or to compute")
    _common(p)
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.add_argument("--wide", action="store_true", help="also what sets each model apart from the profile")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("reproduce", help="retrain every run of the profile here (archive off, into "
                                         "results/reproduced/PROFILE), compare each with its archive entry and each "
                                         "study's conclusions with the archived ones; the book and the report get "
                                         "the page \"Reproduced on this machine\"")
    _common(p)
    p.add_argument("--compare-only", action="store_true",
                   help="compare the runs an earlier reproduce retrained, without training (then render)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("seeds", help="train the profile's configuration and baseline over n_seeds seeds; statistics")
    _common(p)
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("quantization", help="the profile's recipe on a full-precision and on quantized bases "
                                            "(quantize_schemes x quantize_seeds, one process per run)")
    _common(p)
    p.set_defaults(func=cmd_quantization)

    p = sub.add_parser("ablate", help="run the ablation grid (rank x targets x head) of the profile")
    _common(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("audit", help="reload every saved model behind the profile's results in this fresh process, "
                                     "re-score its test rows and compare with what was recorded")
    p.add_argument("--profile", default="demo", help="profile in configs/ (default: demo)")
    p.add_argument("--full", action="store_true", help="re-score every row of every model (by default, models restored "
                   "from the archive, audited in full where they were computed, are re-scored on a sample of rows)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("archive", help="add the profile's complete runs (logits, records, the main adapter) to "
                                       "archive/PROFILE, which `run` restores from; --verify N retrains N of them")
    p.add_argument("--profile", default="demo", help="profile in configs/ (default: demo)")
    p.add_argument("--verify", type=int, default=None, metavar="N",
                   help="retrain N archived runs drawn at random and compare their predictions")
    p.add_argument("--seed", type=int, default=0, help="seed of the --verify draw (default 0)")
    p.add_argument("--drop-superseded", action="store_true",
                   help="remove the entries whose path now holds another, archived computation (after `archive`)")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("findings", help="regenerate the README's and the guide's generated findings from archive/ "
                                        "(--check: only say which differ)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated block differs")
    p.set_defaults(func=cmd_findings)

    p = sub.add_parser("logits", help="write a teacher logits file (for distillation) from any fine-tuned classifier")
    _common(p)
    p.add_argument("--teacher", required=True, help="teacher: an adapter directory (RUN/adapter) or a HF classifier directory")
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(func=cmd_logits)

    p = sub.add_parser("site", help="the published site in build/site: a landing page linking the built books of "
                                    "the given profiles (make site; the Pages workflow)")
    p.add_argument("profiles", nargs="+", metavar="PROFILE", help="profiles whose books are built (make book)")
    p.set_defaults(func=cmd_site)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .core.paths import ProjectError

    # every error the project raises on purpose: a one-line message, no traceback (the data's, the config's and
    # the budget's are ValueErrors, a missing adapter a FileNotFoundError)
    known = (ProjectError, ValueError, FileNotFoundError)
    try:
        return int(args.func(args) or 0)
    except known as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = f" Rerun the same command to resume {out} from its last checkpoint." if out else ""
        print(f"interrupted.{hint}", file=sys.stderr)
        return 130
