"""Plain-text tables and number formatting: one look for every table cnnzoo prints or writes.

A small helper rather than ``rich``: every table here ends up as plain text that tests assert on,
that log files keep and that ``report.md`` embeds as a Markdown pipe table. ``rich`` styles for the
terminal it detects (box characters, colour, wrapping to its width), so its output would need
turning off piece by piece to stay stable, and it would be a new dependency for what is 70 lines here.

Conventions: counts take an upper-case suffix (``712.63K``, ``1.50M``, ``2.30G``); a value that is
missing or not finite prints as ``-``; percentages print without the sign, which the column header
or the sentence around them carries once.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

MISSING = "-"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def format_count(n: Any, digits: int = 2) -> str:
    """A count of parameters, MACs or images: 999 -> '999', 1000 -> '1.00K', 1.5e6 -> '1.50M'."""
    if not _finite(n):
        return MISSING
    if abs(round(n)) < 1000:
        return str(round(n))
    for suffix in "KMG":
        n /= 1000
        text = f"{n:.{digits}f}"
        if abs(float(text)) < 1000:  # so 999,999 is '1.00M', not '1000.00K'
            return text + suffix
    return f"{n / 1000:.{digits}f}T"


def format_percent(fraction: Any, digits: int = 1) -> str:
    """A fraction as percentage points, without the sign: 0.945 -> '94.5'."""
    return f"{100 * fraction:.{digits}f}" if _finite(fraction) else MISSING


def table(rows: Sequence[Sequence[Any]], headers: Optional[Sequence[str]] = None, align: str = "", *,
          markdown: bool = False, pad: bool = True) -> str:
    """Rows of cells as aligned columns, two spaces apart; with ``headers``, dashes under each one.

    ``align`` has one letter per column, ``l`` (text) or ``r`` (numbers); columns past its end are
    left-aligned. ``markdown=True`` writes a pipe table (``headers`` required; ``r`` columns get a
    ``---:`` rule); there ``pad=False`` leaves the cells unpadded, as Markdown writers usually do.
    """
    if markdown and not headers:
        raise ValueError("a Markdown table needs headers")
    grid = [[str(c) for c in row] for row in ([headers] if headers else []) + list(rows)]
    if markdown:
        grid = [[c.replace("|", r"\|") for c in row] for row in grid]
    ncols = max(map(len, grid), default=0)
    if set(align) - {"l", "r"}:
        raise ValueError(f"align takes 'l' or 'r' for each column, got {align!r}")
    align = align.ljust(ncols, "l")
    grid = [row + [""] * (ncols - len(row)) for row in grid]
    widths = [max(len(row[i]) for row in grid) if pad or not markdown else 0 for i in range(ncols)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded).rstrip()

    lines = [line(row) for row in grid]
    if headers and markdown:  # the rule spans the cell and its two spaces; at least three dashes
        rule = ["-" * max(w + 1, 3) + ":" if a == "r" else "-" * max(w + 2, 3) for w, a in zip(widths, align)]
        lines.insert(1, "|" + "|".join(rule) + "|")
    elif headers:  # dashes as long as each header, so a long last column of text adds no long rule
        lines.insert(1, line(["-" * len(h) for h in grid[0]]))
    return "\n".join(lines)
