"""Exact rational numbers for budgets and prices: parsing from user input, canonical text, storage form.

Floats are read from their shortest decimal repr, so ``0.1`` means exactly 1/10 (``Fraction(str(0.1))``),
never the binary approximation 3602879701896397/36028797018963968. NaN, infinities, negatives, booleans and
strings with huge exponents (which would make ``Fraction`` allocate 10**N) are refused. Amounts stored in
documents as text go through `parse_storable`, which also refuses any value whose canonical text could not be
parsed back.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

_TEXT_RE = re.compile(r"^(?:[0-9]{1,40}(?:\.[0-9]{0,40})?|\.[0-9]{1,40})(?:[eE][+-]?[0-9]{1,3})?$")
_RATIO_RE = re.compile(r"^[0-9]{1,60}/[0-9]{1,60}$")


def parse_exact(value: object, what: str = "value") -> Fraction:
    """``value`` as an exact non-negative ``Fraction``; ``ValueError`` (with no echo of the input) otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number")
    if isinstance(value, Fraction):
        f = value
    elif isinstance(value, int):
        f = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite")
        f = Fraction(repr(value))
    elif isinstance(value, Decimal | str):
        text = str(value).strip()
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{what} must be finite")
        if not (_TEXT_RE.match(text) or _RATIO_RE.match(text)):
            raise ValueError(f"{what} must be a finite non-negative decimal or a ratio 'n/d'")
        try:
            f = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{what} must be a finite non-negative decimal or a ratio 'n/d'") from None
    else:
        raise ValueError(f"{what} must be a number")
    if f < 0:
        raise ValueError(f"{what} must not be negative")
    return f


def parse_storable(value: object, what: str = "value") -> Fraction:
    """`parse_exact`, for amounts written into stored documents (agreement budgets and prices) as their
    canonical text (`exact_str`) and parsed back on every load: a value whose text could not be read back
    (``5e-324``, ``"1e400"``, ``10**41``) is refused here, or the stored document would become unreadable."""
    f = parse_exact(value, what)
    text = exact_str(f)
    if not (_TEXT_RE.match(text) or _RATIO_RE.match(text)):
        raise ValueError(f"{what} has more digits than an exact amount may have (40 before and after the point)")
    return f


def exact_str(f: Fraction) -> str:
    """Canonical text: a plain decimal when the value terminates (``"0.000001"``), else ``"n/d"``."""
    den = f.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{f.numerator}/{f.denominator}"
    places = max(twos, fives)
    scaled = f.numerator * 10**places // f.denominator
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    if places == 0:
        return sign + digits
    whole, frac = digits[:-places], digits[-places:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else sign + whole


def to_db(f: Fraction) -> str:
    """Storage form: always ``"num/den"`` (exact; never a float)."""
    return f"{f.numerator}/{f.denominator}"


def from_db(text: str) -> Fraction:
    num, den = text.split("/")
    return Fraction(int(num), int(den))
