"""Prices of provider calls, for spend records and budget reservations.

A provider's own reported cost (``FetchResult.cost``) always wins. When a
provider reports none, the cost of a call is estimated from a price table:
``usd_per_second`` of generated video for a provider and model, with the
date the price was read from the provider's price page. A spec overrides or
extends the built-in table with ``[[prices]]`` entries.

This module is the one place prices live; budgets (the queue layer) only
call :func:`estimate_usd`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BUILTIN_PRICES", "Price", "estimate_usd", "find_price", "video_seconds"]


@dataclass(frozen=True)
class Price:
    """``usd_per_second`` of output video for ``provider`` and ``model``.

    ``model = None`` is the provider's price for any model without its own
    entry. ``read_on`` is the ISO date the price was read (documentation).
    """

    provider: str
    model: str | None
    usd_per_second: float
    read_on: str = ""


#: Built-in prices; providers with their own entries add them here.
#: Hosted prices are list prices per second of output at the default size
#: (docs/providers.md says where each was read and what it does not cover).
BUILTIN_PRICES: tuple[Price, ...] = (
    Price("synthetic", None, 0.0),
    Price("command", None, 0.0),
    # OpenAI: sora-2 at 720p; sora-2-pro at 720x1280/1280x720 (its 1024x1792
    # and 1792x1024 sizes cost 0.50/s: override with [[prices]]).
    Price("openai", "sora-2", 0.10, read_on="2026-12-03"),
    Price("openai", "sora-2-pro", 0.30, read_on="2026-12-03"),
    # Google, Gemini API paid tier, 720p/1080p with audio where the model has it.
    Price("google", "veo-3.1-generate-preview", 0.40, read_on="2026-12-03"),
    Price("google", "veo-3.1-fast-generate-preview", 0.15, read_on="2026-12-03"),
    Price("google", "veo-3.0-generate-001", 0.40, read_on="2026-12-03"),
    Price("google", "veo-3.0-fast-generate-001", 0.15, read_on="2026-12-03"),
    Price("google", "veo-2.0-generate-001", 0.35, read_on="2026-12-03"),
    # Runway bills credits per second of output at $0.01 a credit
    # (docs.dev.runwayml.com/guides/pricing): gen4_turbo 5, gen4.5 12,
    # veo3 40, veo3.1 40 with audio (20 without), veo3.1_fast 15 with audio.
    Price("runway", "gen4_turbo", 0.05, read_on="2026-12-03"),
    Price("runway", "gen4.5", 0.12, read_on="2026-12-03"),
    Price("runway", "veo3", 0.40, read_on="2026-12-03"),
    Price("runway", "veo3.1", 0.40, read_on="2026-12-03"),
    Price("runway", "veo3.1_fast", 0.15, read_on="2026-12-03"),
    # Luma bills by output pixels and seconds; these are 720p rates
    # (ray-2 about $0.71 and ray-flash-2 about $0.24 for 5 s).
    Price("luma", "ray-2", 0.142, read_on="2026-12-03"),
    Price("luma", "ray-flash-2", 0.048, read_on="2026-12-03"),
    # Runs on the user's own hardware: no per-call charge.
    Price("comfyui", None, 0.0, read_on="2026-12-03"),
)

#: Params that name the length of the video in seconds, in the order tried.
_SECONDS_KEYS = ("seconds", "duration", "durationSeconds", "duration_seconds")


def find_price(provider: str, model: str | None, overrides: Iterable[Price] = ()) -> Price | None:
    """The price entry for ``provider``/``model``: the spec's first, then built-in.

    An exact model entry beats the provider-wide (``model = None``) entry.
    """
    for table in (tuple(overrides), BUILTIN_PRICES):
        exact = [p for p in table if p.provider == provider and p.model == model]
        if exact:
            return exact[0]
        wide = [p for p in table if p.provider == provider and p.model is None]
        if wide:
            return wide[0]
    return None


def video_seconds(params: Mapping[str, Any], default: float | None = None) -> float | None:
    """Length in seconds a variant's params ask for (``seconds``, ``duration``...)."""
    for key in _SECONDS_KEYS:
        value = params.get(key)
        if value is None:
            continue
        try:
            text = str(value).strip().removesuffix("s")
            return float(text)
        except ValueError:
            continue
    frames, fps = params.get("frames"), params.get("fps")
    if isinstance(frames, int | float) and isinstance(fps, int | float) and fps > 0:
        return float(frames) / float(fps)
    return default


def estimate_usd(
    provider: str,
    model: str | None,
    params: Mapping[str, Any],
    overrides: Iterable[Price] = (),
    default_seconds: float | None = None,
) -> float | None:
    """Estimated cost in USD of one call, or None when no price is known.

    ``seconds x usd_per_second`` from the price table; a price of 0 gives 0
    even when the length is unknown.
    """
    price = find_price(provider, model, overrides)
    if price is None:
        return None
    if price.usd_per_second == 0:
        return 0.0
    seconds = video_seconds(params, default_seconds)
    if seconds is None:
        return None
    return round(seconds * price.usd_per_second, 6)
