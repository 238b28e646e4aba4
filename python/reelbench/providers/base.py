"""The provider protocol: what reelbench asks of a video generator.

A provider turns a :class:`GenerationRequest` into a video file in three
steps, so that a slow hosted job survives a worker crash:

* ``submit(request) -> job_id``: start the job. The caller stores the job id
  at once; a reclaimed run polls that job instead of paying for a new one.
* ``poll(job_id) -> JobStatus``: ``running``, ``succeeded`` or ``failed``.
* ``fetch(job_id, request, dest) -> FetchResult``: write the video to
  ``dest`` (a temporary path the caller renames), report cost.

Errors: raise :class:`reelbench.errors.RetryableError` for anything that may
pass (network, timeouts, throttling; ``retry_after`` when the provider says
how long to wait) and :class:`reelbench.errors.TerminalError` for anything
that will not (bad parameters, refused content). Providers know nothing of
the database; secrets come from the environment and must never appear in an
error message, a job id or a returned value.

Optional class attributes, read with ``getattr`` and a default, describe a
provider to ``reelbench providers``, the submit-time key check, the seed
check of reports and the crash-safe submit:

* ``key_env: tuple[str, ...]`` environment variables holding the API key
  (any one of them set is enough; default: none needed);
* ``honours_seed: bool`` the same seed gives the same video (default True);
* ``accepts_idempotency_key: bool`` ``submit`` sends
  ``request.idempotency_key`` so a repeated submit starts no second job
  (default False);
* ``param_docs: Mapping[str, tuple[Any, str]]`` param name -> (default,
  one-line description).

Optional methods, for providers whose params name files (resolved against
the spec's folder ``workdir``), called when a spec is loaded:

* ``validate_files(model, params, workdir) -> None`` raises ``ValueError``
  for a missing or unusable file;
* ``pin_params(model, params, workdir) -> dict`` returns the params plus the
  files' content hash, so the variant's identity and the call cache key
  follow the files' content.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "FetchResult",
    "GenerationRequest",
    "JobState",
    "JobStatus",
    "Provider",
]

JobState = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class GenerationRequest:
    """What a provider is asked to generate.

    ``attempt`` is the run's attempt number; it is not part of the request's
    identity (the cache key) and only lets fault injection vary per attempt.
    ``stop`` is set when the run must stop (lease lost, run cancelled):
    providers that work for long in ``fetch`` should check it and raise
    :class:`reelbench.errors.LeaseLost`.
    """

    provider: str
    model: str | None
    params: Mapping[str, Any]
    prompt: str
    seed: int
    item_id: str = ""
    image: str | None = None
    attempt: int = 1
    stop: threading.Event | None = field(default=None, compare=False, repr=False)
    #: The spec's folder, where local programs run; not part of the request's identity.
    workdir: str | None = field(default=None, compare=False)
    #: Client-generated key, stable across attempts of one provider call, for
    #: providers that accept an idempotency key / client request id: a submit
    #: repeated after a crash then starts no second (paid) job. Not identity.
    idempotency_key: str | None = field(default=None, compare=False)

    def payload(self) -> dict[str, Any]:
        """The JSON form handed to local programs (``command`` provider)."""
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "params": dict(self.params),
            "item_id": self.item_id,
            "image": self.image,
            "model": self.model,
        }


@dataclass(frozen=True)
class JobStatus:
    """Where a submitted job stands."""

    state: JobState
    #: Provider's message when ``state == "failed"``.
    error: str | None = None
    #: True when a failed job may succeed if submitted again.
    retryable: bool = False
    #: Seconds the provider suggests waiting before the next poll.
    retry_after: float | None = None


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch`` wrote: size and SHA-256 of the file, and the job's cost."""

    sha256: str
    bytes: int
    #: Money the provider charged for the job, in its currency (None: unknown/free).
    cost: float | None = None
    #: Provider-reported details worth keeping (no secrets).
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """A video generator. Implementations must be safe to call from several threads."""

    #: Registry name (the spec's ``provider = "..."``).
    name: str

    def validate(self, model: str | None, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming the bad key or value if the variant is unusable."""
        ...

    def submit(self, request: GenerationRequest) -> str:
        """Start a job and return its id (stored before anything else happens)."""
        ...

    def poll(self, job_id: str, request: GenerationRequest) -> JobStatus:
        """Report the job's state. Cheap; called repeatedly with backoff."""
        ...

    def fetch(self, job_id: str, request: GenerationRequest, dest: Path) -> FetchResult:
        """Write the finished job's video to ``dest`` and describe it."""
        ...
