"""Video generators behind one protocol, and the registry that finds them by name.

Built-ins: ``synthetic`` (procedural, deterministic, fault injection),
``command`` (a local program), ``replicate`` and ``fal`` (hosted APIs),
``comfyui`` (a workflow on a ComfyUI server).
Third-party providers register in the entry-point group ``reelbench.providers``.
"""

from reelbench.providers.base import (
    FetchResult,
    GenerationRequest,
    JobState,
    JobStatus,
    Provider,
)
from reelbench.providers.registry import (
    ENTRY_POINT_GROUP,
    available_providers,
    get_provider,
    pinned_params,
    validate_variant,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FetchResult",
    "GenerationRequest",
    "JobState",
    "JobStatus",
    "Provider",
    "available_providers",
    "get_provider",
    "pinned_params",
    "validate_variant",
]
