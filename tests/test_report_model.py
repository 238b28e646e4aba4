"""Report summaries: per-variant spread, counts, cost, baseline comparison, seed check."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest
from report_data import Fixture, make_sqlite_database

from reelbench.report import Report, ReportError, build_report, load_report
from reelbench.results import load_results


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Fixture]:
    return make_sqlite_database(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def report(db: tuple[str, Fixture]) -> Report:
    url, fx = db
    return load_report(fx.name, url, baseline="alpha")


def test_variant_metric_spread_is_mean_and_sample_std_of_run_values(
    db: tuple[str, Fixture], report: Report
) -> None:
    url, fx = db
    records = load_results(fx.name, url)
    for v in report.variants:
        for name in ("sharpness", "temporal_flicker", "mad_prev"):
            values = [
                r.metric(name)
                for r in records
                if r.variant_key == v.key and r.status == "succeeded"
            ]
            spread = v.metrics[name]
            assert spread.n == len(values)
            assert spread.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
            assert spread.std == pytest.approx(statistics.stdev(values), rel=1e-12)
            assert (spread.min, spread.max) == (min(values), max(values))


def test_headline_value_prefers_scalar_value_then_mean(db: tuple[str, Fixture]) -> None:
    url, fx = db
    record = next(r for r in load_results(fx.name, url) if r.status == "succeeded")
    assert record.metric("temporal_flicker") == record.metrics["temporal_flicker"]["value"]
    assert record.metric("sharpness") == record.metrics["sharpness"]["mean"]
    assert record.metric("sharpness", "p95") == record.metrics["sharpness"]["p95"]
    assert record.metric("no_such_metric") is None


def test_counts_failures_by_error_class(report: Report) -> None:
    by_key = {v.key: v for v in report.variants}
    assert (by_key["alpha"].succeeded, by_key["alpha"].failed) == (6, 0)
    assert (by_key["gamma"].succeeded, by_key["gamma"].failed) == (4, 2)
    assert by_key["gamma"].failures_by_class == {"retryable": 1, "terminal": 1}
    assert by_key["alpha"].failures_by_class == {}
    assert report.status_counts == {"succeeded": 16, "failed": 2}
    assert [(f.item_key, f.variant_key, f.repeat) for f in report.failures] == [
        ("xss", "gamma", 0),
        ("city", "gamma", 1),
    ]


def test_cost_counts_each_provider_call_once(report: Report) -> None:
    by_key = {v.key: v for v in report.variants}
    assert by_key["alpha"].cost_total == pytest.approx(6 * 0.01)
    # beta's two "city" runs share one cached call: 5 calls paid, not 6.
    assert by_key["beta"].provider_calls == 5
    assert by_key["beta"].cost_total == pytest.approx(5 * 0.02)
    assert by_key["gamma"].cost_total is None  # the provider reports no cost
    assert by_key["gamma"].latency_mean == pytest.approx(statistics.fmean([0.5, 1.5, 0.5, 1.5]))
    assert by_key["gamma"].latency_max == 1.5


def test_baseline_difference_and_ratio_per_metric(report: Report) -> None:
    by_key = {v.key: v for v in report.variants}
    assert report.comparison("alpha", "sharpness") is None  # no row for the baseline itself
    for variant in ("beta", "gamma"):
        for name in report.metric_names:
            c = report.comparison(variant, name)
            assert c is not None
            base, value = by_key["alpha"].metrics[name].mean, by_key[variant].metrics[name].mean
            assert (c.baseline, c.value) == (base, value)
            assert base is not None and value is not None
            assert c.difference == pytest.approx(value - base)
            assert c.ratio == (None if base == 0 else pytest.approx(value / base))


def test_unknown_baseline_names_the_variants(db: tuple[str, Fixture]) -> None:
    url, fx = db
    with pytest.raises(ReportError, match=r"'delta'.*alpha, beta, gamma"):
        load_report(fx.name, url, baseline="delta")


def test_seed_check_tells_reproducible_from_not_and_from_untested(report: Report) -> None:
    verdicts = {v.variant: v for v in report.seed_verdicts}
    assert verdicts["alpha"].verdict == "not tested"  # repeats use different seeds
    assert verdicts["beta"].verdict == "reproducible"
    assert (verdicts["beta"].checked, verdicts["beta"].matched) == (2, 2)
    assert verdicts["gamma"].verdict == "not reproducible"
    assert (verdicts["gamma"].checked, verdicts["gamma"].matched) == (1, 0)


def test_seed_check_names_providers_whose_api_takes_no_seed(report: Report) -> None:
    # gamma's runs differ; had they come from an API without seeds (Sora, Luma),
    # the verdict says so instead of blaming the seed.
    gamma = next(v for v in report.variants if v.key == "gamma")
    as_sora = build_report(
        report.experiment,
        [replace(r, provider="openai") if r.variant_key == "gamma" else r for r in report.runs],
    )
    seeded = {v.variant: v for v in report.seed_verdicts}
    unseeded = {v.variant: v for v in as_sora.seed_verdicts}
    assert gamma.provider != "openai" and seeded["gamma"].verdict == "not reproducible"
    assert unseeded["gamma"].verdict == "seed ignored"
    assert "the openai API takes no seed" in unseeded["gamma"].explanation
    assert unseeded["beta"].verdict == "reproducible"


def test_seed_check_does_not_count_a_shared_cached_call_as_evidence(report: Report) -> None:
    city = [c for c in report.seed_checks if c.variant == "beta" and c.item == "city"]
    assert len(city) == 1
    assert city[0].matched and not city[0].independent


def test_metric_names_follow_reading_order_then_alphabetical(report: Report) -> None:
    assert report.metric_names[:4] == ["psnr_ref", "mse_ref", "mad_prev", "temporal_flicker"]
    assert set(report.metric_names) == {
        "psnr_ref",
        "mse_ref",
        "mad_prev",
        "temporal_flicker",
        "scene_cuts",
        "sharpness",
        "luma_mean",
        "luma_std",
        "black",
    }


def test_infinite_psnr_counts_as_missing_not_as_a_number(report: Report) -> None:
    # alpha's first sunset repeat equals the reference: no finite psnr_ref frame.
    alpha = next(v for v in report.variants if v.key == "alpha")
    assert alpha.metrics["psnr_ref"].n == 1
    assert alpha.metrics["psnr_ref"].missing == 1


def test_metric_undefined_everywhere_is_exported_but_not_shown(db: tuple[str, Fixture]) -> None:
    url, fx = db
    engine_url_records = load_results(fx.name, url)
    records = [
        replace(r, metrics={**r.metrics, "psnr_ref_pooled": {"value": None}})
        for r in engine_url_records
    ]
    base = load_report(fx.name, url)
    report = build_report(base.experiment, records)
    assert "psnr_ref_pooled" in report.metric_names
    assert "psnr_ref_pooled" not in report.shown_metric_names
    assert set(report.shown_metric_names) == set(base.metric_names)
