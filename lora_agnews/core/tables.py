"""The reporting layer: how a number is written, and tables declared once for the notebook, the book and the report.

A :class:`Table` holds its values and its :class:`Column` declarations (key, headers, alignment, format).
The notebooks display :attr:`Table.frame`, the book's pages include :meth:`Table.markdown` and the report
inputs :meth:`Table.latex`, so a table's columns and numbers cannot drift apart between the three. The
number formats live here once too: the macros, the sentences and the tables write a value the same way,
and the tests find the same string in the PDF that the JSON holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .artifacts import latex_escape

DASH = "--"


# --------------------------------------------------------------------------- formats
def missing(x: Any) -> bool:
    """None or NaN: a value a run did not produce (written ``n/a`` or ``--``, never ``nan``)."""
    return x is None or (not isinstance(x, str) and bool(pd.isna(x)))


def pct(x: float | None, digits: int = 2) -> str:
    """A share as a percentage without the sign: 0.94372 -> ``94.37``."""
    return "n/a" if missing(x) else f"{100.0 * float(x):.{digits}f}"


def num(n: int | float | None) -> str:
    """Thousands separators: 980740 -> ``980,740``."""
    return "n/a" if missing(n) else f"{int(n):,}"


def dec(x: float | None, digits: int = 3) -> str:
    """A plain decimal (ECE, NLL, a test statistic): 0.04213 -> ``0.042``."""
    return "n/a" if missing(x) else f"{float(x):.{digits}f}"


def pvalue(p: float) -> str:
    """A p-value in a table cell: ``0.123`` or ``< 0.001``."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``= 0.123`` or ``< 0.001``: what follows "p" in a sentence."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def points(x: float | None, digits: int = 2) -> str:
    """A difference of shares in signed percentage points: -0.0075 -> ``-0.75``; ``--`` when missing."""
    return DASH if missing(x) else f"{100 * float(x):+.{digits}f}"


def interval(low: float | None, high: float | None, digits: int = 2, signed: bool = False) -> str:
    """``[88.90, 92.90]`` (percentages) or, ``signed``, ``[-2.10, +0.60]`` (points); ``--`` when missing."""
    if missing(low) or missing(high):
        return DASH
    write = points if signed else pct
    return f"[{write(low, digits)}, {write(high, digits)}]"


def or_dash(write: Callable[[Any], str]) -> Callable[[Any], str]:
    """``write`` for a cell that may be empty: a missing value reads ``--``."""
    return lambda x: DASH if missing(x) else write(x)


def two_decimals(x: float) -> str:
    """A value already in percent, as the tables write it: 94.3712 -> ``94.37``."""
    return f"{x:.2f}"


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    """One column: the key of its values, its headers (book, report), its alignment in the report, its format."""

    key: str
    title: str | None = None  # the book's header; the key when None
    tex: str | None = None  # the report's header; the title when None
    align: str = "r"
    fmt: Callable[[Any], str] = str

    @property
    def book_header(self) -> str:
        return self.key if self.title is None else self.title

    @property
    def report_header(self) -> str:
        return self.book_header if self.tex is None else self.tex


@dataclass(frozen=True)
class Table:
    """A table's values (one record per row, by column key) and its columns, rendered three ways."""

    columns: tuple[Column, ...]
    rows: tuple[dict[str, Any], ...]
    index: str | None = None  # the key the notebook shows as the frame's index
    empty: str = ""  # what the report says instead of a table without rows ("" keeps the bare header)

    @property
    def frame(self) -> pd.DataFrame:
        """The values as the notebook displays them (typed, under the column keys)."""
        frame = pd.DataFrame({c.key: [row.get(c.key) for row in self.rows] for c in self.columns})
        return frame.set_index(self.index) if self.index is not None else frame

    def cells(self) -> list[list[str]]:
        """Every value written by its column's format (what the book and the report show)."""
        return [[c.fmt(row.get(c.key)) for c in self.columns] for row in self.rows]

    def markdown(self) -> str:
        """A GitHub/MyST pipe table for the book: the first column left-aligned, the others right."""
        def line(values: Iterable[str]) -> str:
            return "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |"

        rule = "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(self.columns))) + "|"
        lines = [line(c.book_header for c in self.columns), rule, *(line(r) for r in self.cells())]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        """A booktabs ``tabular`` for the report (captions live in main.tex)."""
        if self.empty and not self.rows:
            return f"\\emph{{{latex_escape(self.empty)}}}"
        body = [r"\begin{tabular}{" + "".join(c.align for c in self.columns) + "}", r"\toprule",
                " & ".join(latex_escape(c.report_header) for c in self.columns) + r" \\", r"\midrule"]
        body += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in self.cells()]
        return "\n".join([*body, r"\bottomrule", r"\end{tabular}"]) + "\n"

    @classmethod
    def of(cls, columns: Sequence[Column], rows: Iterable[Sequence[Any] | dict[str, Any]],
           index: str | None = None, empty: str = "") -> "Table":
        """A table from its columns and rows (records by key, or sequences in column order)."""
        keys = [c.key for c in columns]
        records = tuple(dict(r) if isinstance(r, dict) else dict(zip(keys, r)) for r in rows)
        return cls(tuple(columns), records, index, empty)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, tex: Sequence[str] | None = None, align: str | None = None) -> "Table":
        """A table of a frame's columns, written as they are: the first left-aligned in the report, the rest right."""
        names = [str(n) for n in frame.columns]
        columns = [Column(n, tex=t, align=a) for n, t, a in
                   zip(names, tex or names, align or "l" + "r" * (len(names) - 1))]
        return cls.of(columns, frame.to_dict(orient="records"))
