"""What each provider needs and offers: key variables, seeds, params and prices.

Reads the optional attributes documented in :mod:`reelbench.providers.base`
(``key_env``, ``honours_seed``, ``accepts_idempotency_key``, ``param_docs``)
with their defaults, for ``reelbench providers`` and the submit-time key
check. Only whether a key variable is set is ever looked at, never its value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reelbench.providers.base import Provider
from reelbench.providers.pricing import BUILTIN_PRICES, Price
from reelbench.providers.registry import _builtin_factories, available_providers, get_provider

__all__ = [
    "ProviderInfo",
    "describe_all",
    "describe_provider",
    "key_env",
    "key_is_set",
    "missing_key_problems",
]


def key_env(provider: Provider) -> tuple[str, ...]:
    """The environment variables that hold the provider's key (any one is enough)."""
    value = getattr(provider, "key_env", ())
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value or ())


def key_is_set(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when the variable ``name`` holds a non-blank value."""
    env = os.environ if environ is None else environ
    return bool(env.get(name, "").strip())


@dataclass(frozen=True)
class ProviderInfo:
    """One provider as ``reelbench providers`` shows it."""

    name: str
    builtin: bool
    summary: str
    key_env: tuple[str, ...]
    keys_set: dict[str, bool]
    honours_seed: bool
    accepts_idempotency_key: bool
    params: dict[str, tuple[Any, str]]
    prices: tuple[Price, ...]
    #: Why the provider could not be loaded (a broken plugin), else None.
    error: str | None = None

    @property
    def key_ready(self) -> bool:
        """No key needed, or at least one of its variables is set."""
        return not self.key_env or any(self.keys_set.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON form (never a key's value)."""
        return {
            "name": self.name,
            "builtin": self.builtin,
            "summary": self.summary,
            "error": self.error,
            "key_env": [{"name": k, "set": self.keys_set[k]} for k in self.key_env],
            "key_ready": self.key_ready,
            "honours_seed": self.honours_seed,
            "accepts_idempotency_key": self.accepts_idempotency_key,
            "params": {
                k: {"default": default, "description": text}
                for k, (default, text) in self.params.items()
            },
            "prices": [
                {"model": p.model, "usd_per_second": p.usd_per_second, "read_on": p.read_on or None}
                for p in self.prices
            ],
        }


def _summary(provider: object) -> str:
    doc = (type(provider).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def describe_provider(name: str, environ: Mapping[str, str] | None = None) -> ProviderInfo:
    """Everything known about ``name``; a plugin that fails to load is described by its error."""
    builtin = name in _builtin_factories()
    prices = tuple(p for p in BUILTIN_PRICES if p.provider == name)
    try:
        provider = get_provider(name)
    except Exception as exc:
        if builtin:
            raise
        return ProviderInfo(
            name, False, "", (), {}, True, False, {}, prices, error=f"cannot load: {exc}"
        )
    envs = key_env(provider)
    docs = getattr(provider, "param_docs", {}) or {}
    return ProviderInfo(
        name=name,
        builtin=builtin,
        summary=_summary(provider),
        key_env=envs,
        keys_set={k: key_is_set(k, environ) for k in envs},
        honours_seed=bool(getattr(provider, "honours_seed", True)),
        accepts_idempotency_key=bool(getattr(provider, "accepts_idempotency_key", False)),
        params={str(k): (v[0], str(v[1])) for k, v in docs.items()},
        prices=prices,
    )


def describe_all(environ: Mapping[str, str] | None = None) -> list[ProviderInfo]:
    """Every built-in and installed provider, by name."""
    return [describe_provider(name, environ) for name in available_providers()]


def missing_key_problems(
    variants: Iterable[tuple[str, str]], environ: Mapping[str, str] | None = None
) -> list[str]:
    """One message per variant ``(key, provider)`` whose provider's key is not set.

    Unknown providers are left to the spec check (it names them already).
    """
    problems = []
    for index, (variant, name) in enumerate(variants):
        try:
            provider = get_provider(name)
        except Exception:
            continue
        envs = key_env(provider)
        if not envs or any(key_is_set(k, environ) for k in envs):
            continue
        which = envs[0] if len(envs) == 1 else " or ".join(envs)
        problems.append(
            f"variants[{index}] ({variant}, {name}): the environment variable {which} is not "
            f"set; export the {name} API key as {envs[0]} first "
            "(see `reelbench providers " + name + "`)"
        )
    return problems
