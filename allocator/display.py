"""How numbers are shown to people (summary lines, the report, the CLI): a value that rounds
to 0 at the precision shown is written ``0``, never ``4.191e-13`` nor ``-0.00``.

Solver noise is cleaned where the tables are derived (tokens/s within the tolerance are 0);
these functions make sure that whatever is left of it does not reach a reader either.
"""

from __future__ import annotations

import math

QTY_DECIMALS = 6  # a quantity below half a millionth of its unit shows as 0


def number(x) -> float | None:
    """``x`` as a finite float, else None (None, text, NaN, inf)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rounds_to_zero(x: float, decimals: int) -> bool:
    return round(float(x), decimals) == 0


def fixed(x, decimals: int = 2) -> str:
    """``x`` with ``decimals`` decimals and thousands separators; 0 when it rounds to 0."""
    f = number(x)
    if f is None:
        return "n/a"
    return "0" if rounds_to_zero(f, decimals) else f"{f:,.{decimals}f}"


def qty(x) -> str:
    """A quantity: 16,220 from a thousand up, else 4 significant digits (at most 6 decimals);
    0 when it rounds to 0."""
    f = number(x)
    if f is None:
        return "n/a"
    if rounds_to_zero(f, QTY_DECIMALS):
        return "0"
    if abs(f) >= 1000:
        return f"{f:,.0f}"
    if abs(f) < 1e-3:
        return f"{round(f, QTY_DECIMALS):.{QTY_DECIMALS}f}".rstrip("0")
    return f"{f:,.4g}"


def usd(x) -> str:
    """$1.23M, $45.6k, $12.34: compact dollars; $0 when it rounds to a cent of 0."""
    f = number(x)
    if f is None:
        return "n/a"
    if rounds_to_zero(f, 2):
        return "$0"
    a = abs(f)
    sign = "-" if f < 0 else ""
    if a >= 1e9:
        return f"{sign}${a / 1e9:,.3g}B" if a < 1e11 else f"{sign}${a / 1e9:,.0f}B"
    if a >= 1e6:
        return f"{sign}${a / 1e6:,.3g}M" if a < 1e8 else f"{sign}${a / 1e6:,.0f}M"
    if a >= 1e4:
        return f"{sign}${a / 1e3:,.3g}k" if a < 1e5 else f"{sign}${a / 1e3:,.0f}k"
    return f"{sign}${a:,.2f}" if a < 100 else f"{sign}${a:,.0f}"


def pct(x, decimals: int = 4) -> str:
    """A fraction as a percentage with ``decimals`` decimals; 0 % when it rounds to 0."""
    f = number(x)
    if f is None:
        return "n/a"
    return "0%" if rounds_to_zero(100 * f, decimals) else f"{f:.{decimals}%}"
