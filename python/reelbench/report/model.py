"""What a report says, computed once from the run records; renderers only format it.

Per variant: metric mean and spread over items and repeats, run counts by
status, failures by error class, provider cost and latency. Per item x
variant: the runs (the grid cells). Optionally each variant against a
baseline variant, metric by metric. And the seed check: where a variant ran
the same request more than once without the cache, did the outputs match?
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from reelbench.errors import ReelbenchError
from reelbench.metric_plugins import ERROR_STAT
from reelbench.results import ExperimentInfo, RunRecord

if TYPE_CHECKING:
    # Judging needs numpy: imported when there are votes to summarize.
    from reelbench.judging import JudgingSummary, Vote

__all__ = [
    "METRIC_DESCRIPTIONS",
    "BaselineComparison",
    "ItemInfo",
    "MetricSpread",
    "Report",
    "ReportError",
    "SeedCheck",
    "SeedVerdict",
    "VariantSummary",
    "build_report",
    "order_metric_names",
]

#: Known metrics in the order reports show them, with a one-line meaning.
METRIC_DESCRIPTIONS: dict[str, str] = {
    "ssim_ref": "SSIM against the reference video (1 = identical)",
    "psnr_ref": "PSNR against the reference video, dB (higher = closer)",
    "mse_ref": "mean squared error against the reference video (0 = identical)",
    "ssim_prev": "SSIM between consecutive frames (1 = no change)",
    "psnr_prev": "PSNR between consecutive frames, dB",
    "mad_prev": "mean absolute luma difference between consecutive frames",
    "temporal_flicker": "(255 - mean mad_prev) / 255; 1 = perfectly still",
    "frozen_ratio": "share of frames identical to the previous one",
    "scene_cuts": "number of detected scene cuts",
    "sharpness": "variance of the Laplacian of luma (higher = sharper)",
    "luma_mean": "mean luma, 0-255",
    "luma_std": "standard deviation of luma within a frame",
    "black": "share of near-black pixels in a frame",
    "black_ratio": "share of frames that are almost entirely black",
    "psnr_ref_pooled": "PSNR of the mean MSE against the reference over all frames, dB",
    "psnr_prev_pooled": "PSNR of the mean MSE between consecutive frames, dB",
    "motion_mean": "mean optical-flow magnitude, px per frame at the canonical size",
    "motion_p95": "95th percentile of the optical-flow magnitude, px per frame",
    "dynamic_degree": "share of frame pairs that move (motion_p95 above the threshold)",
    "warp_error": "mean |frame t+1 - frame t warped by the flow| (lower = steadier)",
    "si": "spatial information (ITU-T P.910, as FFmpeg's siti)",
    "ti": "temporal information (ITU-T P.910, as FFmpeg's siti)",
}

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class ReportError(ReelbenchError):
    """The report cannot be built as asked (unknown baseline, no runs)."""


@dataclass(frozen=True)
class MetricSpread:
    """One metric of one variant over its runs (items x repeats)."""

    n: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    #: Runs that have the metric but no finite value (PSNR of identical frames is +inf).
    missing: int = 0
    #: Runs on which the metric failed (a metric plugin that raised); not in ``missing``.
    errors: int = 0


@dataclass(frozen=True)
class VariantSummary:
    """Everything the summary table shows about one variant."""

    key: str
    provider: str
    model: str | None
    runs: int
    status_counts: dict[str, int]
    failures_by_class: dict[str, int]
    #: Distinct provider calls behind the runs (cache hits share one).
    provider_calls: int
    cost_total: float | None
    latency_mean: float | None
    latency_max: float | None
    metrics: dict[str, MetricSpread]

    @property
    def succeeded(self) -> int:
        """Runs that produced a canonical video and metrics."""
        return self.status_counts.get("succeeded", 0)

    @property
    def failed(self) -> int:
        """Runs that ended as failed."""
        return self.status_counts.get("failed", 0)

    @property
    def pending(self) -> int:
        """Runs not finished yet (queued or running)."""
        return sum(n for s, n in self.status_counts.items() if s not in TERMINAL_STATUSES)


@dataclass(frozen=True)
class BaselineComparison:
    """One metric of one variant against the baseline variant (means over runs)."""

    variant: str
    metric: str
    baseline: float | None
    value: float | None
    difference: float | None
    ratio: float | None


@dataclass(frozen=True)
class SeedCheck:
    """Runs of one variant that sent the provider the same request (same item and seed)."""

    variant: str
    item: str
    seed: int
    run_ids: tuple[int, ...]
    sha256s: tuple[str, ...]
    #: False when all runs reused one cached provider call: equal hashes then prove nothing.
    independent: bool

    @property
    def matched(self) -> bool:
        """All outputs have the same SHA-256."""
        return len(set(self.sha256s)) == 1


@dataclass(frozen=True)
class SeedVerdict:
    """Per variant: does the provider give the same output for the same request?"""

    variant: str
    checked: int
    matched: int
    #: reproducible | not reproducible | seed ignored (the provider takes none)
    # | cached | not tested
    verdict: str
    explanation: str


@dataclass(frozen=True)
class ItemInfo:
    """One row of the grid."""

    key: str
    prompt: str
    image: str | None
    reference: str | None


@dataclass(frozen=True)
class Report:
    """The whole report, renderer-independent."""

    experiment: ExperimentInfo
    generated_at: datetime
    items: list[ItemInfo]
    variants: list[VariantSummary]
    metric_names: list[str]
    runs: list[RunRecord]
    baseline: str | None = None
    comparisons: list[BaselineComparison] = field(default_factory=list)
    seed_checks: list[SeedCheck] = field(default_factory=list)
    seed_verdicts: list[SeedVerdict] = field(default_factory=list)
    #: Human ratings and metric agreement; None when nobody voted.
    judging: JudgingSummary | None = None

    @cached_property
    def _cells(self) -> dict[tuple[str, str], list[RunRecord]]:
        cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for r in self.runs:
            cells[r.item_key, r.variant_key].append(r)
        return cells

    @cached_property
    def _comparisons(self) -> dict[tuple[str, str], BaselineComparison]:
        return {(c.variant, c.metric): c for c in self.comparisons}

    def cell(self, item: str, variant: str) -> list[RunRecord]:
        """The runs of one item x variant, by repeat."""
        return list(self._cells.get((item, variant), ()))

    @property
    def failures(self) -> list[RunRecord]:
        """Failed and cancelled runs, in grid order."""
        return [r for r in self.runs if r.status in ("failed", "cancelled")]

    @property
    def status_counts(self) -> dict[str, int]:
        """Runs per status over the whole experiment."""
        return dict(Counter(r.status for r in self.runs))

    @property
    def waiting(self) -> dict[str, int]:
        """Queued runs that wait on the fleet, by reason (``budget reached``...)."""
        from reelbench.db.experiments import short_reason

        return dict(
            Counter(short_reason(r.wait_reason) for r in self.runs if r.wait_reason is not None)
        )

    @property
    def cost_total(self) -> float | None:
        """What the experiment's provider calls cost (None: no cost known)."""
        costs = [v.cost_total for v in self.variants if v.cost_total is not None]
        return math.fsum(costs) if costs else None

    def spend_line(self) -> str | None:
        """``spent $X of a $Y budget`` / ``spent $X``; None when nothing is known."""
        spent, budget = self.cost_total, self.experiment.max_usd
        if spent is None and budget is None:
            return None
        text = f"spent ${spent or 0:.2f}"
        return text + (f" of a ${budget:.2f} budget" if budget is not None else "")

    def waiting_lines(self) -> list[str]:
        """One line per wait reason of queued runs, with what to do about the budget."""
        lines = []
        for reason, count in sorted(self.waiting.items()):
            line = f"{count} queued run(s) {reason}"
            if reason == "budget reached":
                line += f" (raise it: reelbench budget {self.experiment.name} --max-usd N)"
            lines.append(line)
        return lines

    @cached_property
    def shown_metric_names(self) -> list[str]:
        """Metrics with a value somewhere; tables skip those undefined everywhere.

        (A metric such as ``psnr_ref_pooled`` is stored as null for runs without
        a reference; the JSON export keeps it, the tables need not show a row of dashes.)
        """
        return [
            n for n in self.metric_names if any(v.metrics[n].n or v.metrics[n].errors
                                                for v in self.variants)
        ]  # fmt: skip

    @cached_property
    def metric_errors(self) -> list[tuple[RunRecord, str]]:
        """(run, metric) for every metric that failed on a succeeded run, in grid order."""
        return [
            (r, name) for r in self.runs if r.status == "succeeded"
            for name, stats in r.metrics.items() if ERROR_STAT in stats
        ]  # fmt: skip

    def comparison(self, variant: str, metric: str) -> BaselineComparison | None:
        """The baseline comparison of one variant and metric, if a baseline was asked for."""
        return self._comparisons.get((variant, metric))


def order_metric_names(names: Iterable[str]) -> list[str]:
    """Known metrics in their reading order, then any others alphabetically."""
    present = set(names)
    known = [n for n in METRIC_DESCRIPTIONS if n in present]
    return known + sorted(present - set(known))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _spread(values: Sequence[float | None], errors: int = 0) -> MetricSpread:
    finite = [v for v in (_finite(x) for x in values) if v is not None]
    missing = len(values) - len(finite)
    if not finite:
        return MetricSpread(
            n=0, mean=None, std=None, min=None, max=None, missing=missing, errors=errors
        )
    # Sample standard deviation: the runs are a sample of what the variant produces.
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return MetricSpread(
        n=len(finite),
        mean=statistics.fmean(finite),
        std=std,
        min=min(finite),
        max=max(finite),
        missing=missing,
        errors=errors,
    )


def _summarize_variant(runs: list[RunRecord], metric_names: list[str]) -> VariantSummary:
    first = runs[0]
    succeeded = [r for r in runs if r.status == "succeeded"]
    failures = Counter(r.error_class or "unknown" for r in runs if r.status == "failed")

    # Cost and latency belong to provider calls, not runs: a cache hit reuses a
    # call that was paid once, so count each call once.
    calls: dict[int, RunRecord] = {}
    for r in runs:
        if r.provider_call_id is not None:
            calls.setdefault(r.provider_call_id, r)
    costs = [c.cost for c in calls.values() if c.cost is not None]
    latencies = [c.latency_seconds for c in calls.values() if c.latency_seconds is not None]

    return VariantSummary(
        key=first.variant_key,
        provider=first.provider,
        model=first.model,
        runs=len(runs),
        status_counts=dict(Counter(r.status for r in runs)),
        failures_by_class=dict(sorted(failures.items())),
        provider_calls=len(calls),
        cost_total=math.fsum(costs) if costs else None,
        latency_mean=statistics.fmean(latencies) if latencies else None,
        latency_max=max(latencies) if latencies else None,
        # Runs without the metric at all (no reference video, say) are not
        # "missing" values; runs that have it with an undefined value are.
        metrics={
            name: _spread(
                [
                    r.metric(name)
                    for r in succeeded
                    if name in r.metrics and ERROR_STAT not in r.metrics[name]
                ],
                errors=sum(ERROR_STAT in r.metrics.get(name, {}) for r in succeeded),
            )
            for name in metric_names
        },
    )


def _compare(
    variants: list[VariantSummary], baseline: str, metric_names: list[str]
) -> list[BaselineComparison]:
    base = next(v for v in variants if v.key == baseline)
    out = []
    for v in variants:
        if v.key == baseline:
            continue
        for name in metric_names:
            b = base.metrics[name].mean
            x = v.metrics[name].mean
            diff = x - b if x is not None and b is not None else None
            ratio = x / b if x is not None and b is not None and b != 0 else None
            out.append(BaselineComparison(v.key, name, b, x, diff, ratio))
    return out


def _seed_checks(runs: list[RunRecord]) -> list[SeedCheck]:
    groups: dict[tuple[str, str, int], list[RunRecord]] = defaultdict(list)
    for r in runs:
        sha = r.raw_sha256 or r.canon_sha256
        if r.status == "succeeded" and sha:
            groups[(r.variant_key, r.item_key, r.seed)].append(r)
    checks = []
    for (variant, item, seed), group in groups.items():
        if len(group) < 2:
            continue
        call_ids = {
            r.provider_call_id if r.provider_call_id is not None else -r.run_id for r in group
        }
        checks.append(
            SeedCheck(
                variant=variant,
                item=item,
                seed=seed,
                run_ids=tuple(r.run_id for r in group),
                # The provider's own output is the evidence; the canonical
                # re-encode stands in when the raw hash is unknown.
                sha256s=tuple(r.raw_sha256 or r.canon_sha256 or "" for r in group),
                independent=len(call_ids) > 1,
            )
        )
    return checks


def _honours_seed(provider: str) -> bool:
    """What the provider says of itself (``honours_seed``); unknown providers are assumed to."""
    from reelbench.providers import get_provider

    try:
        return bool(getattr(get_provider(provider), "honours_seed", True))
    except Exception:  # a plugin not installed where the report is made
        return True


def _seed_verdict(
    variant: str, checks: list[SeedCheck], provider: str | None = None
) -> SeedVerdict:
    independent = [c for c in checks if c.variant == variant and c.independent]
    cached = [c for c in checks if c.variant == variant and not c.independent]
    matched = sum(c.matched for c in independent)
    if provider is not None and not _honours_seed(provider):
        # The API takes no seed: equal outputs would be chance, different ones expected.
        why = f"the {provider} API takes no seed, so the same request is not reproducible"
        if independent:
            why += f" ({matched} of {len(independent)} repeated requests matched)"
        return SeedVerdict(variant, len(independent), matched, "seed ignored", why)
    if independent:
        if matched == len(independent):
            verdict, why = "reproducible", "the same request gave byte-identical outputs"
        else:
            verdict = "not reproducible"
            why = (
                f"{len(independent) - matched} of {len(independent)} repeated requests gave "
                "different outputs: the provider does not honor the seed"
            )
    elif cached:
        verdict = "cached"
        why = "repeated requests reused one cached provider call; run with cache = false to test"
    else:
        verdict = "not tested"
        why = "no request ran twice (repeats use different seeds unless params fix one)"
    return SeedVerdict(variant, len(independent), matched, verdict, why)


def build_report(
    experiment: ExperimentInfo,
    runs: Sequence[RunRecord],
    *,
    baseline: str | None = None,
    generated_at: datetime | None = None,
    votes: Sequence[Vote] | None = None,
) -> Report:
    """Summaries, comparisons and seed checks of an experiment's run records.

    ``votes``: the experiment's human votes (:func:`reelbench.judging.load_votes`).
    Raises :class:`ReportError` when ``baseline`` names no variant of the experiment.
    """
    runs = list(runs)
    by_variant: dict[str, list[RunRecord]] = {}
    items: dict[str, ItemInfo] = {}
    for r in runs:
        by_variant.setdefault(r.variant_key, []).append(r)
        items.setdefault(r.item_key, ItemInfo(r.item_key, r.prompt, r.item_image, r.item_reference))
    metric_names = order_metric_names(name for r in runs for name in r.metrics)
    variants = [_summarize_variant(rs, metric_names) for rs in by_variant.values()]

    if baseline is not None and baseline not in by_variant:
        known = ", ".join(by_variant) or "none"
        raise ReportError(
            f"baseline {baseline!r} is not a variant of experiment {experiment.name!r} "
            f"(variants: {known})"
        )
    checks = _seed_checks(runs)
    return Report(
        experiment=experiment,
        generated_at=generated_at or datetime.now(UTC),
        items=list(items.values()),
        variants=variants,
        metric_names=metric_names,
        runs=runs,
        baseline=baseline,
        comparisons=_compare(variants, baseline, metric_names) if baseline else [],
        seed_checks=checks,
        seed_verdicts=[_seed_verdict(v.key, checks, v.provider) for v in variants],
        judging=_judging(votes, runs, metric_names) if votes else None,
    )


def _judging(
    votes: Sequence[Vote], runs: Sequence[RunRecord], metric_names: Sequence[str]
) -> JudgingSummary:
    from reelbench.judging import summarize_judging

    return summarize_judging(votes, runs, metric_names)
