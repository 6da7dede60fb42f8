"""A model call's dollars from flat genai-prices rates, without Decimal on
the usual path, and bit for bit the float the Decimal sum gives.

genai-prices gives per-million-token prices as Decimals. Summing a call's
tokens times them in Decimal cost ~2.5 µs a call on the tracker's path; the
same sum in Python ints costs a tenth of that. Flat prices are kept as whole
numbers of 10**-k dollars per million tokens (k: the most decimals of any of
the four), with the divisor 10**(k + 6) that makes dollars of their sum.

Why ``n / divisor`` is the float the Decimal sum gives: every term is >= 0,
so every product and partial sum of the Decimal computation, written with an
exponent >= -k, has a coefficient <= n. Below :data:`EXACT` (28 digits, the
default context's precision; genai-prices only changes it inside its own
``localcontext``, and spanvisor never does) no Decimal operation rounds, and
dividing by a million is exact too: the Decimal result is exactly the
rational ``n / divisor``. ``float()`` of a Decimal (through its string) and
Python's ``int / int`` are both the correctly rounded float of that one
number. At or above EXACT the Decimal sum is used, as before.
"""

from __future__ import annotations

from decimal import Decimal
from operator import truediv
from typing import Any

Rates = tuple[Decimal, Decimal, Decimal, Decimal]
# (input, output, cache read, cache write as scaled ints; the divisor), or
# None when only the Decimal sum will do; then the Decimal prices.
FlatPrices = tuple[tuple[tuple[int, int, int, int], int] | None, Rates]
EXACT = 10**28
_MILLION = Decimal(1_000_000)


def flat_prices(price: Any) -> FlatPrices | None:
    """A model's per-million-token prices when they are flat numbers (input,
    output, cache read, cache write; cache prices default to input's), else
    None (tiered prices: genai-prices computes every call)."""
    values = [
        getattr(price, name, None) for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    ]
    per_in, per_out, per_read, per_write = values
    per_in = per_in if per_in is not None else Decimal(0)
    per_out = per_out if per_out is not None else Decimal(0)
    per_read = per_read if per_read is not None else per_in
    per_write = per_write if per_write is not None else per_in
    rates = (per_in, per_out, per_read, per_write)
    if not all(isinstance(r, Decimal) for r in rates):
        return None
    return _scaled(rates), rates


def _scaled(rates: Rates) -> tuple[tuple[int, int, int, int], int] | None:
    """The prices as ints and divisor; None (the Decimal sum every call) when
    one is not finite and non-negative or has more digits than a context holds."""
    if not all(r.is_finite() and r >= 0 for r in rates):
        return None
    k = max(0, *(-int(r.as_tuple().exponent) for r in rates))
    scaled = [int(r.scaleb(k)) for r in rates]
    if any(Decimal(n).scaleb(-k) != r for n, r in zip(scaled, rates, strict=True)):
        return None
    return (scaled[0], scaled[1], scaled[2], scaled[3]), 10 ** (k + 6)


def dollars(flat: FlatPrices, plain_in: int, t_out: int, read: int, write: int) -> float:
    """The call's dollars: ``plain_in`` input tokens neither read from nor
    written to a cache, ``t_out`` output tokens, ``read``/``write`` cache
    tokens (all >= 0)."""
    scaled, per = flat
    if scaled is not None:
        (n_in, n_out, n_read, n_write), divisor = scaled
        n = plain_in * n_in + t_out * n_out + read * n_read + write * n_write
        if n < EXACT:
            # operator.truediv, not ``/``: compiled (mypyc) int / int goes
            # through two doubles for ints below 2**63, rounding twice above 2**53.
            exact: float = truediv(n, divisor)
            return exact
    total = Decimal(plain_in) * per[0] + Decimal(t_out) * per[1]
    total += Decimal(read) * per[2] + Decimal(write) * per[3]
    return float(total / _MILLION)


__all__ = ["EXACT", "FlatPrices", "Rates", "dollars", "flat_prices"]
