"""Provider registry: built-ins plus third-party providers from entry points.

A package adds a provider by declaring an entry point in the group
``reelbench.providers``; the name is the spec's ``provider = "..."`` and the
object is a class (instantiated without arguments), a factory function or a
ready instance::

    [project.entry-points."reelbench.providers"]
    mymodel = "mypackage.provider:MyModelProvider"
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, cast

from reelbench.providers.base import Provider

__all__ = [
    "ENTRY_POINT_GROUP",
    "available_providers",
    "get_provider",
    "pinned_params",
    "validate_variant",
]

ENTRY_POINT_GROUP = "reelbench.providers"

_lock = threading.Lock()
_instances: dict[str, Provider] = {}


#: Built-in providers: name -> (module, class). Each module is imported when its
#: provider is first used: the HTTP adapters pull in httpx (and ComfyUI PyAV
#: and numpy), which a run of local providers does not need.
_BUILTINS = {
    "synthetic": ("reelbench.providers.synthetic", "SyntheticProvider"),
    "command": ("reelbench.providers.command", "CommandProvider"),
    "replicate": ("reelbench.providers.replicate", "ReplicateProvider"),
    "fal": ("reelbench.providers.fal", "FalProvider"),
    "openai": ("reelbench.providers.openai", "OpenAIProvider"),
    "google": ("reelbench.providers.google", "GoogleProvider"),
    "runway": ("reelbench.providers.runway", "RunwayProvider"),
    "luma": ("reelbench.providers.luma", "LumaProvider"),
    "comfyui": ("reelbench.providers.comfyui", "ComfyUIProvider"),
}


def _builtin_factory(module: str, attr: str) -> Callable[[], Provider]:
    def make() -> Provider:
        return cast(Provider, getattr(importlib.import_module(module), attr)())

    return make


def _builtin_factories() -> dict[str, Callable[[], Provider]]:
    return {name: _builtin_factory(module, attr) for name, (module, attr) in _BUILTINS.items()}


def _entry_point_factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_providers() -> list[str]:
    """Names of every provider that can be used: built-ins and installed plugins."""
    return sorted(set(_builtin_factories()) | set(_entry_point_factories()))


def _instantiate(name: str, obj: Any) -> Provider:
    # A class (which structurally "has" the protocol's methods) or a factory
    # is called; an instance is used as is.
    is_factory = isinstance(obj, type) or (callable(obj) and not isinstance(obj, Provider))
    provider = obj() if is_factory else obj
    if isinstance(provider, type) or not isinstance(provider, Provider):
        raise ValueError(
            f"provider {name!r} (entry point group {ENTRY_POINT_GROUP!r}) does not implement "
            "the Provider protocol (name, validate, submit, poll, fetch)"
        )
    return provider


def get_provider(name: str) -> Provider:
    """The provider registered under ``name`` (one shared instance per process).

    Raises ``ValueError`` naming the known providers when ``name`` is unknown.
    Built-ins win over plugins of the same name, so a plugin cannot silently
    replace ``synthetic`` or ``command``.
    """
    with _lock:
        if name in _instances:
            return _instances[name]
        builtins = _builtin_factories()
        if name in builtins:
            provider = builtins[name]()
        else:
            plugins = _entry_point_factories()
            if name not in plugins:
                known = ", ".join(sorted(set(builtins) | set(plugins)))
                raise ValueError(
                    f"unknown provider {name!r}; known providers: {known}. "
                    f"Third-party providers register in the entry-point group "
                    f"{ENTRY_POINT_GROUP!r}."
                )
            provider = _instantiate(name, plugins[name].load())
        _instances[name] = provider
        return provider


def validate_variant(
    provider: str, model: str | None, params: Mapping[str, Any], workdir: str | None = None
) -> None:
    """Check a variant before its runs are queued; ``ValueError`` says what is wrong.

    A provider whose params name files (a workflow, say) may also define
    ``validate_files(model, params, workdir)``: it is called with the spec's
    folder, against which those relative paths resolve.
    """
    instance = get_provider(provider)
    instance.validate(model, params)
    check_files = getattr(instance, "validate_files", None)
    if check_files is not None:
        check_files(model, params, workdir)


def pinned_params(
    provider: str, model: str | None, params: Mapping[str, Any], workdir: str | None
) -> dict[str, Any]:
    """The variant's params with what its provider pins at spec time.

    A provider whose output depends on a file the params only name (a
    workflow) defines ``pin_params(model, params, workdir)`` returning the
    params plus that file's content hash: the variant's identity, and with it
    the provider-call cache key, then change when the file does.
    """
    pin = getattr(get_provider(provider), "pin_params", None)
    return dict(pin(model, params, workdir)) if pin is not None else dict(params)
