"""The page "Reproduced on this machine" and the report's section of the same name, from ``reproduction.json``.

Sentences and tables (declared once, rendered for the book and the report) of what :mod:`lora_agnews.studies.
reproduction` recorded: how many retrained runs give the archived labels, the accuracy differences with their
paired intervals, which conclusions of the studies are the same, what differs between the two machines, and what
the reproduction cost against what the archive estimates. Differences are stated as findings, never as failures.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..core.paths import DASH, Column, Table, interval, latex_escape, num, pct, points, say
from ..studies.comparison import HIGHER, LOWER

# What each study's interval verdicts are against (the same words the studies' own sentences use)
AGAINST = {"seed study": "the baseline", "grid": "the pick", "merging": "the own adapter",
           "quantization": "full precision"}
TITLE = "Reproduced on this machine"


# --------------------------------------------------------------------------- when the record belongs to the results
def applies(record: Mapping[str, Any] | None, stamp: Mapping[str, Any]) -> bool:
    """Whether a reproduction record describes these results: the same overrides and results format (a record of
    other overrides is left out of the book and the report, with a line saying so)."""
    from ..core.paths import RESULTS_FORMAT

    if record is None:
        return False
    if record.get("results_format") != RESULTS_FORMAT or record.get("overrides", {}) != stamp.get("overrides", {}):
        say(f"reproduction.json of profile {record.get('profile')} was made with other overrides "
            f"({record.get('overrides')}) or results format: not shown; rerun `make reproduce` with these ARGS")
        return False
    return True


# --------------------------------------------------------------------------- words
def duration(seconds: float | None) -> str:
    """``11 min 56 s`` (``45 s`` under a minute; ``2 h 5 min`` from an hour on)."""
    if seconds is None:
        return "an unrecorded time"
    s = int(round(float(seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def machine_words(machine: Mapping[str, Any]) -> str:
    """``Intel(R) Xeon(R) Processor (AMX, no GPU)``."""
    gpu = machine.get("gpu")
    return (f"{machine.get('cpu', 'an unknown CPU')} ({machine.get('cpu_kind', 'unknown kind')}, "
            f"{'no GPU' if gpu in (None, 'none') else 'GPU ' + str(gpu)})")


def _aspect(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return next((d for d in record["differences"] if d["aspect"] == name), {"archived": [], "here": [], "differs": False})


def headline(record: Mapping[str, Any]) -> str:
    """The page's first paragraph: what was retrained where, how many runs give the archived labels, how many
    conclusions are the same."""
    s = record["summary"]
    computed = sorted({r["archived"]["machine"].get("cpu_kind", "?") for r in record["runs"] if "archived" in r})
    text = (f"Every run of the {record['profile']} profile was retrained on this machine, "
            f"{machine_words(record['machine'])}, with the archive turned off (finished "
            f"{str(record.get('retrained') or record['compared_at'])[:10]}, {duration(record.get('retrain_seconds'))} "
            f"of notebooks), and compared with the computation kept in `{record['archive']}` "
            f"({', '.join(computed)}). ")
    if not s["compared"]:
        return text + "No retrained run could be paired with an archived one (the table below says why)."
    text += f"{s['identical']} of {s['compared']} retrained models give the archived label on every test row"
    if s["identical"] < s["compared"]:
        text += f"; the others agree on {pct(s['lowest_agreement'])}% of their rows or more"
    text += "."
    if s["conclusions"]:
        differ = s["conclusions"] - s["same_conclusions"]
        text += (f" {s['same_conclusions']} of {s['conclusions']} conclusions of the studies are the same"
                 + (f"; {differ} differ{'s' if differ == 1 else ''} (listed below)." if differ else "."))
    return text


def machine_sentence(record: Mapping[str, Any]) -> str:
    """Whether the two sides computed alike, what differs between them, and what that means for the results."""
    packages = [d["aspect"] for d in record["differences"] if d["differs"] and d["aspect"] not in
                ("CPU kind", "CPU", "GPU", "precision", "device", "commit")]
    text = _same_setting(record) if record["summary"].get("same_setting") else _other_setting(record)
    if packages:
        text += f" Package versions differ too: {', '.join(packages)} (table below)."
    return text


def _same_setting(record: Mapping[str, Any]) -> str:
    """The same machine kind and precision: identical labels expected, unless the thread count differs."""
    device = _aspect(record, "device")
    text = "The archive was computed in the same setting (the same machine kind and precision)"
    if device["differs"]:
        return text + (f" but on another device or thread count ({', '.join(device['archived'])} against "
                       f"{', '.join(device['here'])} here), which changes the last bits of training: identical labels "
                       f"are likely, not guaranteed.")
    unexpected = record["summary"].get("unexpected", 0)
    return text + (", so retraining is the same computation and identical labels are expected (the audit's exact "
                   "rule)" + (f"; {unexpected} run(s) give other labels all the same: not the machine, but the code or "
                              f"the packages (the tables below)." if unexpected else "."))


def _other_setting(record: Mapping[str, Any]) -> str:
    """Another machine kind or precision: what differs, what it may do, and that it is a finding."""
    kind, precision = _aspect(record, "CPU kind"), _aspect(record, "precision")
    return (f"The archive was computed in another setting (machine kind {', '.join(kind['archived']) or 'unknown'} "
            f"against {', '.join(kind['here']) or 'unknown'} here"
            + (f"; precision {', '.join(precision['archived'])} against {', '.join(precision['here'])}"
               if precision["differs"] else "")
            + "): the last bits of a matmul round differently, and retraining compounds that over every step, so rows "
              "near a decision boundary may change label, and a verdict near its boundary with them. Each run's "
              "column \"rule\" gives the audit's verdict across settings (within the numerical noise of re-scoring "
              "or beyond it), stated, not required. What differs is a finding about the results, not an error.")


def estimate_sentence(cost: Mapping[str, Any]) -> str:
    """What the archive says a reproduction costs: its runs' recorded training and test-scoring seconds, summed."""
    text = (f"Estimate from `archive/{cost['profile']}`: the recorded training and test-scoring seconds of its "
            f"{cost['runs']} runs sum to {duration(cost['seconds'])} "
            f"(computed {'; '.join(cost['computed']) or 'on an unrecorded machine'})")
    if cost["without_seconds"]:
        text += f"; {cost['without_seconds']} models of the merging study kept no seconds and are not counted"
    return text + (". The notebooks' own work (data, scoring, merging, figures) comes on top; runs timed while other "
                   "work shared the cores count that time too.")


def cost_sentence(record: Mapping[str, Any]) -> str:
    """The archive's estimate of a reproduction beside what it took here."""
    return (estimate_sentence(record["cost"]) + f" Measured here: the retraining (the six notebooks) took "
            f"{duration(record.get('retrain_seconds'))}.")


# --------------------------------------------------------------------------- tables
def differences_table(record: Mapping[str, Any]) -> Table:
    """Per aspect: what the archived runs were computed with and what the retrained ones were."""
    rows = [(d["aspect"], ", ".join(d["archived"]) or DASH, ", ".join(d["here"]) or DASH,
             "differs" if d["differs"] else "same") for d in record["differences"]]
    return Table.of([Column("aspect", tex="Aspect", align="l"), Column("archive", tex="Archive", align="l"),
                     Column("here", tex="Here", align="l"), Column("", align="l")], rows)


def _run_name(row: Mapping[str, Any]) -> str:
    name = row["path"].removeprefix("runs/")
    return f"{name} ({row['task']})" if row.get("task") else name


def runs_table(record: Mapping[str, Any]) -> Table:
    """Per archived run (per task for the multi-task model): test rows, the accuracy archived and here, the paired
    difference with its interval, the share of rows with the same label, the audit's rule with the largest logit
    difference; or why it was not compared. Six columns, so that it fits the book's column."""
    rows = []
    for r in record["runs"]:
        if r["status"] != "compared":
            rows.append((_run_name(r), DASH, DASH, r["status"], DASH, DASH))
            continue
        diff = r["max_abs_logit_diff"]
        rule = RULE_WORDS.get(r.get("rule"), DASH) + ("" if diff is None else f", {diff:.1e}")
        rows.append((_run_name(r), num(r["n_test"]), f"{pct(r['archived_accuracy'])} / {pct(r['accuracy'])}",
                     f"{points(r['difference'])} {interval(*r['difference_ci'], signed=True)}",
                     pct(r["label_agreement"]), rule))
    return Table.of([Column("run", tex="Run", align="l"), Column("rows", tex="Rows"),
                     Column("accuracy %, archive / here", tex="Accuracy (%), archive / here"),
                     Column("difference, points [95% CI]", tex="Difference [95% CI]", align="l"),
                     Column("same label %", tex="Same label (%)"),
                     Column("rule, max |logit diff|", tex="Rule, max logit diff", align="l")], rows)


# The audit's verdicts (studies/agreement.py), shortened for a table cell
RULE_WORDS = {"reproduced exactly": "identical", "reproduced within numerical noise": "within noise",
              "does not reproduce": "beyond noise"}


def verdict_words(c: Mapping[str, Any] | None) -> str:
    """A conclusion as the table shows it: ``not resolved, -0.88 [-2.75, +0.88]``, ``higher than the baseline,
    ...``, or the choice (``r2-query+key+value-linear``, ``0.44``); ``--`` where this side has none."""
    if c is None:
        return DASH
    if c["ci"] is None:
        return str(c["verdict"])
    against = AGAINST.get(c["study"], "the reference")
    verdict = {HIGHER: f"higher than {against}", LOWER: f"lower than {against}"}.get(c["verdict"], c["verdict"])
    text = f"{verdict}, {points(c['value'])} {interval(*c['ci'], signed=True)}"
    return f"{c['setting']}: {text}" if c.get("setting") else text


def conclusions_table(record: Mapping[str, Any], only_differing: bool = False) -> Table:
    """Each conclusion of the studies, archived and here, and whether it is the same (``only_differing``: those
    that are not)."""
    pairs = [p for p in record["conclusions"] if not (only_differing and p["same"])]
    rows = [(p["study"], p["item"], verdict_words(p["archived"]), verdict_words(p["here"]),
             "same" if p["same"] else "differs") for p in pairs]
    return Table.of([Column("study", tex="Study", align="l"), Column("conclusion", tex="Conclusion", align="l"),
                     Column("archive", tex="Archive", align="l"), Column("here", tex="Here", align="l"),
                     Column("", align="l")], rows, empty="Every conclusion is the same.")


def conclusions_summary_table(record: Mapping[str, Any]) -> Table:
    """Per study: how many conclusions it states and how many are the same here."""
    counts: dict[str, list[int]] = {}
    for p in record["conclusions"]:
        counts.setdefault(p["study"], [0, 0])
        counts[p["study"]][0] += 1
        counts[p["study"]][1] += int(p["same"])
    rows = [(study, n, same, n - same) for study, (n, same) in counts.items()]
    return Table.of([Column("study", tex="Study", align="l"), Column("conclusions", tex="Conclusions"),
                     Column("same", tex="Same"), Column("differ", tex="Differ")], rows)


# --------------------------------------------------------------------------- the book and the report
def book_context(record: Mapping[str, Any]) -> dict[str, Any]:
    """What ``book/reproduced.md`` renders."""
    return {"title": TITLE, "record": dict(record), "headline": headline(record),
            "machine_sentence": machine_sentence(record), "cost_sentence": cost_sentence(record),
            "studies_note": record.get("studies_note") or "",
            "tables": {"differences": differences_table(record).markdown(), "runs": runs_table(record).markdown(),
                       "summary": conclusions_summary_table(record).markdown(),
                       "conclusions": conclusions_table(record).markdown()}}


def _latex_text(text: str) -> str:
    """A generated sentence for LaTeX: escaped, with Markdown's code spans as ``\\texttt``."""
    parts = text.split("`")
    return "".join(f"\\texttt{{{latex_escape(p)}}}" if i % 2 else latex_escape(p) for i, p in enumerate(parts))


def _float_table(table: Table, caption: str, label: str) -> str:
    """A table float; ``caption`` is LaTeX written here (it may reference other tables), the table's cells escaped."""
    return ("\\begin{table}[htbp]\n\\centering\\small\n\\adjustbox{max width=\\linewidth}{" + table.latex().strip()
            + "}\n\\caption{" + caption + "}\n\\label{" + label + "}\n\\end{table}\n")


def latex_section(record: Mapping[str, Any]) -> str:
    """The report's section: the sentences, the machines, the runs, the conclusions per study and those that differ
    (all of them are in the book), the cost; its floats stay in the section (``\\FloatBarrier``)."""
    note = record.get("studies_note")
    differ = record["summary"]["conclusions"] - record["summary"]["same_conclusions"]
    parts = [f"\\section{{{TITLE}}}\\label{{sec:reproduced}}", _latex_text(headline(record)),
             _latex_text(machine_sentence(record)) + " Table~\\ref{tab:reproduced-machines} lists what each side was "
             "computed with, Table~\\ref{tab:reproduced-runs} compares each run, and "
             "Table~\\ref{tab:reproduced-conclusions} the studies' conclusions"
             + (" (Table~\\ref{tab:reproduced-differing}: those that differ)." if differ else
                "; every conclusion is the same."),
             _float_table(differences_table(record), "What the archived runs and the runs retrained here were computed "
                          "with.", "tab:reproduced-machines"),
             _float_table(runs_table(record), "Each archived run against its retraining here, on the same test rows: "
                          "the paired bootstrap interval of the accuracy difference (points), the share of rows given "
                          "the same label, the largest logit difference and the audit's rule.", "tab:reproduced-runs"),
             _float_table(conclusions_summary_table(record), "The studies' conclusions computed again from the "
                          "retrained runs: how many are the same as the archived ones.", "tab:reproduced-conclusions")]
    if differ:
        parts.append(_float_table(conclusions_table(record, only_differing=True), "Conclusions that differ between "
                                  "the archive and this machine.", "tab:reproduced-differing"))
    parts += [_latex_text(cost_sentence(record)) + (" " + _latex_text(note) + "." if note else ""), "\\FloatBarrier"]
    return "\n\n".join(parts) + "\n"


def reproduced_line(record: Mapping[str, Any]) -> str:
    """The one line ``reproduce`` prints."""
    s = record["summary"]
    return (f"reproduce: profile {record['profile']}: {s['identical']} of {s['compared']} retrained models give the "
            f"archived labels, {s['same_conclusions']} of {s['conclusions']} conclusions the same"
            + ("" if s.get("same_setting") else " (another setting than the archive's: machine kind or precision)")
            + f" -> results/{record['profile']}/reproduction.json")


def differing(pairs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The conclusions that differ, one short line each (the command's output)."""
    return [f"  {p['study']}: {p['item']}: {verdict_words(p['archived'])} -> {verdict_words(p['here'])}"
            for p in pairs if not p["same"]]
