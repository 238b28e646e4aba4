"""The ``reelbench`` command line.

Every command that touches the database takes ``--db`` (env
``REELBENCH_DATABASE_URL``) and ``--artifacts`` (env ``REELBENCH_ARTIFACTS``);
commands that print data take ``--json``. Exit codes: 0 success, 1 failures
(some runs failed, a worker error), 2 bad input (bad spec, missing file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from reelbench import __version__

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB_URL = "sqlite:///.reelbench/reelbench.db"
DEFAULT_ARTIFACTS = ".reelbench/artifacts"


def db_option(func: F) -> F:
    """``--db URL``: where the runs live."""
    return click.option(
        "--db",
        "db_url",
        envvar="REELBENCH_DATABASE_URL",
        default=DEFAULT_DB_URL,
        show_default=True,
        metavar="URL",
        help="Database URL: sqlite:///path.db or postgresql+psycopg://user@host/db "
        "(env REELBENCH_DATABASE_URL).",
    )(func)


def artifacts_option(func: F) -> F:
    """``--artifacts DIR``: where videos and per-frame metrics are written."""
    return click.option(
        "--artifacts",
        "artifacts_dir",
        envvar="REELBENCH_ARTIFACTS",
        default=DEFAULT_ARTIFACTS,
        show_default=True,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help="Artifact root directory (env REELBENCH_ARTIFACTS).",
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    """
