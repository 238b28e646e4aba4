"""Exceptions that decide what happens to a run.

The orchestrator maps them to outcomes: ``RetryableError`` requeues the run
with backoff (honoring ``retry_after``), ``TerminalError`` fails it at once,
``LeaseLost`` drops the work silently (another worker owns the run now),
``Deferred`` puts the run back in the queue for later without counting an
attempt (a fleet-wide provider slot, rate window or the budget said "not now").
Any other exception is treated as retryable: an unknown failure may be
transient, and ``max_attempts`` bounds the cost.
"""

from __future__ import annotations

__all__ = [
    "ERROR_CLASSES",
    "Deferred",
    "LeaseLost",
    "ReelbenchError",
    "RetryableError",
    "RunCancelled",
    "RunError",
    "TerminalError",
]

ERROR_CLASSES = ("retryable", "terminal")


class ReelbenchError(Exception):
    """Base of every error reelbench raises on purpose."""


class RunError(ReelbenchError):
    """A run failed; ``error_class`` says whether trying again can help."""

    error_class = "retryable"


class RetryableError(RunError):
    """Network trouble, timeouts, HTTP 429/5xx, a throttled provider."""

    error_class = "retryable"

    def __init__(
        self, message: str, *, retry_after: float | None = None, maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        #: Seconds the provider asked us to wait (HTTP Retry-After), if any.
        self.retry_after = retry_after
        #: The request may have reached the provider and been acted on, with
        #: the answer lost (a read timeout, a connection cut mid-response, a
        #: gateway timeout): a submit that failed so may have started a job.
        self.maybe_delivered = maybe_delivered


class TerminalError(RunError):
    """Invalid parameters, refused content, output that is not a decodable video."""

    error_class = "terminal"


class LeaseLost(ReelbenchError):
    """This worker no longer owns the run (lease expired and reclaimed, or cancelled)."""


class RunCancelled(LeaseLost):
    """The user cancelled the run while it was being processed."""


class Deferred(ReelbenchError):
    """Not now: the run waits in the queue (``reason``) and is tried again later.

    Raised before any paid provider work starts, when the fleet-wide limits
    (provider slots, submits per minute, a provider's Retry-After) or the
    experiment's budget do not allow a submit. Not a failure: no attempt of
    the run's retry budget is used, and no worker thread waits.
    """

    def __init__(self, reason: str, *, retry_in: float, kind: str = "limit") -> None:
        super().__init__(reason)
        #: Shown by ``status``, reports and ``run`` while the run waits.
        self.reason = reason
        #: Seconds before the run may be claimed again.
        self.retry_in = max(0.0, retry_in)
        #: ``limit`` (slot, rate, pause) or ``budget``.
        self.kind = kind
