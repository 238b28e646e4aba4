"""Small checks shared by the built-in providers' ``validate`` methods."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["check_known_keys", "number_param"]


def check_known_keys(provider: str, params: Mapping[str, Any], known: Collection[str]) -> None:
    """Raise ``ValueError`` for a key the provider does not take (a typo must not pass)."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"provider {provider!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def number_param(
    provider: str,
    params: Mapping[str, Any],
    key: str,
    default: float,
    *,
    lo: float,
    hi: float,
    integer: bool = False,
) -> float:
    """``params[key]`` checked to be a number in ``[lo, hi]`` (an int when ``integer``)."""
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"provider {provider!r}: {key} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ValueError(f"provider {provider!r}: {key} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"provider {provider!r}: {key} must be in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)
