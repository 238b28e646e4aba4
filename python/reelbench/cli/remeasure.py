"""``reelbench remeasure``: compute metrics again for the finished runs of an experiment."""

from __future__ import annotations

import json

import click

from reelbench.cli.options import BadInput, db_option, json_option, open_db

__all__ = ["remeasure_command"]


@click.command("remeasure")
@click.argument("experiment")
@click.option(
    "--metric", "-m", "metrics", multiple=True, metavar="NAME",
    help="A metric group (frame, temporal, reference, chroma, motion) or a metric plugin; "
    "repeat for several. Default: the experiment's [metrics] groups and plugins.",
)  # fmt: skip
@db_option
@json_option
def remeasure_command(
    experiment: str, metrics: tuple[str, ...], db_url: str, as_json: bool
) -> None:
    """Queue the finished runs of EXPERIMENT to have their metrics computed again.

    \b
    Workers decode each run's canonical video (no provider call, no
    re-encode), compute the metrics asked for and replace the run's values
    of those metrics atomically; other metrics keep their values. The
    reports say which metrics version produced each number. Like runs,
    remeasures are leased, fenced and retried, and `reelbench status` shows
    their progress; one that fails leaves the run with its earlier metrics.
    \b
      reelbench remeasure cats --metric motion
      reelbench worker --drain --experiment cats
    """
    from reelbench.metric_plugins import available_plugins
    from reelbench.spec import METRIC_GROUPS

    known = set(METRIC_GROUPS) | set(available_plugins())
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise BadInput(
            f"unknown metric {', '.join(map(repr, unknown))}: choose metric groups "
            f"({', '.join(METRIC_GROUPS)}) or installed metric plugins "
            f"({', '.join(available_plugins()) or 'none installed'})"
        )
    from reelbench.db.remeasure import queue_remeasure

    db = open_db(db_url)
    try:
        with db.sessions() as session:
            try:
                count = queue_remeasure(session, experiment, metrics)
            except LookupError as exc:
                raise BadInput(str(exc.args[0])) from exc
    finally:
        db.dispose()
    if as_json:
        click.echo(
            json.dumps({"experiment": experiment, "queued": count, "metrics": list(metrics)})
        )
        return
    what = ", ".join(metrics) if metrics else "the experiment's metrics"
    click.echo(
        f"{experiment}: {count} finished run(s) queued to remeasure {what}; "
        f"`reelbench worker --drain --experiment {experiment}` processes them"
    )
