"""The ``reelbench`` command line.

One click group, ``main``. Each command lives in the module of its family
(``cli/run.py``, ``cli/queue.py``, ``cli/report.py``, ``cli/metrics.py``...)
and is imported only when it is invoked: ``reelbench --help`` and
``reelbench metrics`` never load SQLAlchemy, Alembic or the report code.
Command modules import shared options from :mod:`reelbench.cli.options`,
never this package's group, so there is no import cycle.

Every command that touches the database takes ``--db`` (env
``REELBENCH_DATABASE_URL``) and ``--artifacts`` (env ``REELBENCH_ARTIFACTS``);
commands that print data take ``--json``. Exit codes: 0 success, 1 failures
(some runs failed, a worker error), 2 bad input (bad spec, missing file).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from reelbench import __version__

__all__ = ["COMMANDS", "entry", "main"]

#: name -> (module, attribute, one-line summary shown by ``reelbench --help``).
#: The summary is the command's own first docstring line (a test checks it).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "reelbench.cli.run",
        "run_command",
        "Run the experiment spec SPEC end to end: queue, work, report.",
    ),
    "submit": (
        "reelbench.cli.queue",
        "submit_command",
        "Queue the runs of the experiment spec SPEC (a TOML file).",
    ),
    "worker": (
        "reelbench.cli.queue",
        "worker_command",
        "Claim queued runs and process them until stopped.",
    ),
    "status": (
        "reelbench.cli.queue",
        "status_command",
        "Runs per state, finishing rate and ETA, for one experiment or all.",
    ),
    "retry": (
        "reelbench.cli.queue",
        "retry_command",
        "Put the failed runs of EXPERIMENT back in the queue, with a fresh retry budget.",
    ),
    "cancel": (
        "reelbench.cli.queue",
        "cancel_command",
        "Cancel the queued and running runs of EXPERIMENT.",
    ),
    "report": (
        "reelbench.cli.report",
        "report_command",
        "Compare the variants of EXPERIMENT (its name or id).",
    ),
    "judgments": (
        "reelbench.cli.judgments",
        "judgments_command",
        "Export the human votes of EXPERIMENT, or import votes collected elsewhere.",
    ),
    "metrics": (
        "reelbench.cli.metrics",
        "metrics_command",
        "Frame metrics of VIDEO, decoded with PyAV (Y plane, native code).",
    ),
    "serve": (
        "reelbench.cli.serve",
        "serve_command",
        "Serve the judging web app: blind pairwise votes on an experiment's videos.",
    ),
    "providers": (
        "reelbench.cli.providers",
        "providers_command",
        "List the video providers: API keys, params and defaults, seeds and prices.",
    ),
    "remeasure": (
        "reelbench.cli.remeasure",
        "remeasure_command",
        "Queue the finished runs of EXPERIMENT to have their metrics computed again.",
    ),
    "db": ("reelbench.cli.queue", "db_group", "Database maintenance."),
    "limits": (
        "reelbench.cli.fleet",
        "limits_group",
        "Fleet-wide provider limits: calls in flight and submits per minute.",
    ),
    "budget": (
        "reelbench.cli.fleet",
        "budget_command",
        "Show or change the spend budget of EXPERIMENT: spent, committed, per variant.",
    ),
    "cache": (
        "reelbench.cli.cache",
        "cache_group",
        "The provider-call cache: list, show and forget cached calls.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (see :data:`COMMANDS`)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, attr, _ = self.lazy[cmd_name]
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attr} is not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing uses the summaries, so `reelbench --help` imports no command.
        rows = [(name, self.lazy[name][2]) for name in sorted(self.lazy)]
        rows += [
            (name, cmd.get_short_help_str(limit=200))
            for name, cmd in sorted(self.commands.items())
            if name not in self.lazy and not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="reelbench")
def main() -> None:
    """reelbench: run video-generation experiments and measure the videos.

    \b
    Typical use:
      reelbench run experiment.toml          submit, work and report in one go
      reelbench submit experiment.toml       queue the runs (for a fleet)
      reelbench worker --concurrency 4       work queued runs
      reelbench status                       counts per state, rate, ETA
      reelbench report NAME --format html    compare the variants
      reelbench metrics video.mp4            frame metrics of any video
      reelbench serve                        watch, compare and judge in a browser
      reelbench providers                    what each provider needs (API keys...)
    """


def entry() -> None:
    """The ``reelbench`` executable: :func:`main`, then a quick exit where a command asked.

    A command that called :func:`reelbench.cli.quick_exit.exit_quickly` and ended
    with an exit code leaves with ``os._exit`` once stdout, stderr and the
    logging handlers are flushed, skipping the interpreter's teardown.
    """
    from reelbench.cli.quick_exit import wants_quick_exit

    try:
        main.main(prog_name="reelbench")
    except SystemExit as exc:
        code = exc.code
        if not wants_quick_exit() or not (code is None or isinstance(code, int)):
            raise
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            raise exc from None  # a closed pipe: let the usual exit report it
        logging.shutdown()
        os._exit(code or 0)
