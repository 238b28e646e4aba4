"""The fleet's queue-layer state on SQLite and PostgreSQL: slots, rate windows, pauses, budgets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from reelbench.cli import main
from reelbench.db import budget, limits
from reelbench.db.engine import Database, open_database
from reelbench.db.models import (
    Experiment,
    ProviderCall,
    ProviderLimit,
    ProviderSlot,
    Run,
    Spend,
)
from reelbench.spec import SpecError, parse_spec
from reelbench.submit import submit_spec


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


def _spec(runs: int = 4, **extra: object) -> dict[str, object]:
    return {
        "experiment": {"name": "e"},
        "items": [{"id": "cat", "prompt": "a cat"}],
        "variants": [
            {
                "key": "v",
                "provider": "replicate",
                "model": "acme/gen",
                "repeats": runs,
                "params": {"seconds": 2},
            }
        ],
        "prices": [{"provider": "replicate", "usd_per_second": 0.5, "read_on": "2026-12-03"}],
        **extra,
    }


def _experiment_with_calls(
    db: Database, count: int, **extra: object
) -> tuple[int, list[tuple[int, int]]]:
    """An experiment with ``count`` runs, each with a provider call row of its own."""
    result = submit_spec(db.sessions, parse_spec(_spec(count, **extra)))
    with db.sessions() as session:
        run_ids = list(session.scalars(select(Run.id).order_by(Run.id)))
        call_ids = []
        for run_id in run_ids:
            call = ProviderCall(
                request_hash=f"{run_id:064d}",
                provider="replicate",
                request={},
                status="pending",
                created_at=datetime.now(UTC),
            )
            session.add(call)
            session.flush()
            call_ids.append(call.id)
        session.commit()
    return result.experiment_id, list(zip(run_ids, call_ids, strict=True))


def test_concurrency_slots_have_one_winner_each_and_expired_ones_come_back(db: Database) -> None:
    with db.sessions() as session:
        limits.set_limit(session, "replicate", concurrency=2, per_minute=None)
    grants: list[limits.Grant | limits.Wait] = []
    barrier = threading.Barrier(6)

    def take(run_id: int) -> None:
        with db.sessions() as session:
            barrier.wait()
            grants.append(
                limits.acquire(
                    session, "replicate", "m", run_id=run_id, attempt=1, lease_seconds=30
                )
            )

    threads = [threading.Thread(target=take, args=(i,)) for i in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [g for g in grants if isinstance(g, limits.Grant)]
    waits = [g for g in grants if isinstance(g, limits.Wait)]
    assert len(won) == 2 and len(waits) == 4
    assert all("waiting for a replicate slot" in w.reason for w in waits)
    with db.sessions() as session:
        states = {s.scope: s for s in limits.limit_states(session)}
        assert states["replicate"].in_flight == 2
        # A holder whose lease lapsed (its worker died) loses the slot to the next taker.
        session.execute(
            update(ProviderSlot)
            .where(ProviderSlot.holder_run_id == won[0].run_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
        session.commit()
        again = limits.acquire(session, "replicate", "m", run_id=99, attempt=1, lease_seconds=30)
        assert isinstance(again, limits.Grant)
        # Giving back frees the slot; renewing keeps it.
        limits.release(session, won[1])  # type: ignore[arg-type]
        assert isinstance(
            limits.acquire(session, "replicate", "m", run_id=100, attempt=1, lease_seconds=30),
            limits.Grant,
        )
        assert isinstance(
            limits.acquire(session, "replicate", "m", run_id=101, attempt=1, lease_seconds=30),
            limits.Wait,
        )


def test_a_model_limit_and_a_provider_limit_both_apply(db: Database) -> None:
    with db.sessions() as session:
        limits.set_limit(session, "replicate", concurrency=5, per_minute=None)
        limits.set_limit(session, "replicate:acme/gen", concurrency=1, per_minute=None)
        first = limits.acquire(
            session, "replicate", "acme/gen", run_id=1, attempt=1, lease_seconds=30
        )
        assert isinstance(first, limits.Grant) and len(first.slot_ids) == 2
        second = limits.acquire(
            session, "replicate", "acme/gen", run_id=2, attempt=1, lease_seconds=30
        )
        assert isinstance(second, limits.Wait) and "replicate:acme/gen" in second.reason
        # The waiting run gave back the provider-wide slot it had taken.
        assert {s.scope: s.in_flight for s in limits.limit_states(session)} == {
            "replicate": 1,
            "replicate:acme/gen": 1,
        }
        other = limits.acquire(session, "replicate", "other", run_id=3, attempt=1, lease_seconds=30)
        assert isinstance(other, limits.Grant)


def test_rate_slots_let_m_submits_through_per_sixty_seconds(db: Database) -> None:
    with db.sessions() as session:
        limits.set_limit(session, "replicate", concurrency=None, per_minute=3)
        results = [
            limits.acquire(session, "replicate", None, run_id=i, attempt=1, lease_seconds=30)
            for i in range(5)
        ]
        assert [isinstance(r, limits.Grant) for r in results] == [True, True, True, False, False]
        wait = results[3]
        assert isinstance(wait, limits.Wait) and 55 < wait.seconds <= 61
        # Polling an existing job takes no submit of the window.
        assert isinstance(
            limits.acquire(
                session, "replicate", None, run_id=9, attempt=1, lease_seconds=30, submit=False
            ),
            limits.Grant,
        )
        # A minute later the window has room again.
        session.execute(
            update(ProviderSlot).values(used_at=datetime.now(UTC) - timedelta(seconds=61))
        )
        session.commit()
        assert isinstance(
            limits.acquire(session, "replicate", None, run_id=7, attempt=1, lease_seconds=30),
            limits.Grant,
        )


def test_a_providers_retry_after_pauses_the_whole_scope(db: Database) -> None:
    with db.sessions() as session:
        limits.pause(session, "replicate", 30)
        wait = limits.acquire(session, "replicate", "x", run_id=1, attempt=1, lease_seconds=30)
        assert isinstance(wait, limits.Wait) and "HTTP 429" in wait.reason
        assert 29 <= wait.seconds <= 31
        (state,) = limits.limit_states(session)
        assert state.paused_until is not None and state.source == "provider"
        assert isinstance(
            limits.acquire(session, "fal", "x", run_id=2, attempt=1, lease_seconds=30),
            limits.Grant,
        )


def test_spec_limits_never_override_the_ones_set_from_the_cli(db: Database) -> None:
    with db.sessions() as session:
        limits.set_limit(session, "replicate", concurrency=2, per_minute=None)
    spec = parse_spec(
        _spec(
            limits={
                "replicate": {"concurrency": 9},
                "fal:fal-ai/x": {"per_minute": 5},
            }
        )
    )
    result = submit_spec(db.sessions, spec)
    assert len(result.notes) == 1 and "reelbench limits set" in result.notes[0]
    with db.sessions() as session:
        rows = {r.scope: r for r in session.scalars(select(ProviderLimit))}
        assert rows["replicate"].concurrency == 2 and rows["replicate"].source == "cli"
        assert rows["fal:fal-ai/x"].per_minute == 5 and rows["fal:fal-ai/x"].source == "spec"


def test_reservations_never_pass_the_budget_under_racing_threads(db: Database) -> None:
    experiment_id, runs = _experiment_with_calls(db, 12, budget={"max_usd": 5})
    outcomes: list[int | budget.BudgetState | None] = []
    barrier = threading.Barrier(len(runs))

    def reserve(run_id: int, call_id: int) -> None:
        with db.sessions() as session:
            barrier.wait()
            outcomes.append(
                budget.reserve(
                    session,
                    experiment_id=experiment_id,
                    run_id=run_id,
                    attempt=1,
                    call_id=call_id,
                    provider="replicate",
                    model="acme/gen",
                    estimate_usd=1.0,
                )
            )

    threads = [threading.Thread(target=reserve, args=pair) for pair in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(o, int) for o in outcomes) == 5
    assert sum(isinstance(o, budget.BudgetState) for o in outcomes) == 7
    with db.sessions() as session:
        state = budget.budget_state(session, experiment_id)
        assert (state.charged_usd, state.open_usd, state.remaining_usd) == (0.0, 5.0, 0.0)
        spent = list(session.scalars(select(Spend).order_by(Spend.id)))
        assert len(spent) == 5 and all(s.state == "open" for s in spent)
        budget.charge(session, spent[0].call_id or 0, 0.75, "provider")
        budget.release_call(session, spent[1].call_id or 0)
        state = budget.budget_state(session, experiment_id)
        assert state.charged_usd == pytest.approx(0.75) and state.open_usd == pytest.approx(3.0)
        assert budget.spend_by_variant(session, experiment_id) == {"v": pytest.approx(0.75)}


def test_raising_the_budget_wakes_the_runs_it_held_back(db: Database, tmp_path: Path) -> None:
    experiment_id, _ = _experiment_with_calls(db, 3, budget={"max_usd": 1})
    later = datetime.now(UTC) + timedelta(hours=1)
    with db.sessions() as session:
        session.execute(
            update(Run).values(not_before=later, wait_reason="budget reached: $1.00 of $1.00")
        )
        session.commit()
    result = CliRunner().invoke(main, ["budget", "e", "--max-usd", "3", "--db", db.url])
    assert result.exit_code == 0, result.output
    assert "budget $3.00" in result.output and "3 woken up" in result.output
    with db.sessions() as session:
        assert session.scalar(select(Experiment.max_usd)) == 3
        assert set(session.scalars(select(Run.not_before))) == {None}
    status = CliRunner().invoke(main, ["status", "--db", db.url])
    assert "3 queued run(s) budget reached" in status.output
    assert "reelbench budget e --max-usd N" in status.output
    assert experiment_id


def test_resubmitting_keeps_a_budget_changed_from_the_cli(db: Database) -> None:
    submit_spec(db.sessions, parse_spec(_spec(budget={"max_usd": 5})))
    with db.sessions() as session:
        budget.set_budget(session, session.scalar(select(Experiment.id)) or 0, 50)
    submit_spec(db.sessions, parse_spec(_spec(budget={"max_usd": 5})))
    with db.sessions() as session:
        assert session.scalar(select(Experiment.max_usd)) == 50
    submit_spec(db.sessions, parse_spec(_spec(budget={"max_usd": 7})))
    with db.sessions() as session:
        assert session.scalar(select(Experiment.max_usd)) == 7


def test_a_budget_needs_a_price_for_every_variant(db: Database) -> None:
    spec = _spec(budget={"max_usd": 5})
    spec["prices"] = []
    with pytest.raises(SpecError, match=r"no price is known for replicate:acme/gen"):
        submit_spec(db.sessions, parse_spec(spec))
    with db.sessions() as session:
        assert session.scalar(select(Experiment.id)) is None  # nothing queued


def test_limits_cli_sets_lists_and_clears(db: Database) -> None:
    runner = CliRunner()
    out = runner.invoke(
        main, ["limits", "set", "openai:sora-2", "--concurrency", "3", "--per-minute", "20",
               "--db", db.url],
    )  # fmt: skip
    assert out.exit_code == 0 and "3 in flight, 20 submits per minute" in out.output
    listed = runner.invoke(main, ["limits", "--json", "--db", db.url])
    assert '"scope": "openai:sora-2"' in listed.output and '"concurrency": 3' in listed.output
    table = runner.invoke(main, ["limits", "--db", db.url])
    assert "openai:sora-2" in table.output and "reelbench limits set" in table.output
    bad = runner.invoke(main, ["limits", "set", "open ai", "--concurrency", "1", "--db", db.url])
    assert bad.exit_code == 2 and "PROVIDER or PROVIDER:MODEL" in bad.output
    neither = runner.invoke(main, ["limits", "set", "openai", "--db", db.url])
    assert neither.exit_code == 2 and "--concurrency" in neither.output
    cleared = runner.invoke(main, ["limits", "clear", "openai:sora-2", "--db", db.url])
    assert "removed" in cleared.output
    assert "no provider limits" in runner.invoke(main, ["limits", "--db", db.url]).output


def test_spec_limits_and_policies_are_validated() -> None:
    with pytest.raises(SpecError, match="give concurrency, per_minute or both"):
        parse_spec(_spec(limits={"replicate": {}}))
    with pytest.raises(SpecError, match="PROVIDER or PROVIDER:MODEL"):
        parse_spec(_spec(limits={"bad scope": {"concurrency": 1}}))
    with pytest.raises(SpecError, match="on_uncertain_submit"):
        parse_spec(_spec(retry={"on_uncertain_submit": "maybe"}))
    ok = parse_spec(_spec(retry={"on_uncertain_submit": "resubmit"}, budget={"max_usd": 2}))
    assert ok.retry.on_uncertain_submit == "resubmit" and ok.budget.max_usd == 2
