"""Where reelbench keeps its state by default, and how a database URL is shown.

Light on purpose (no SQLAlchemy): the command line imports it to show its
defaults in ``--help``, and ``reelbench metrics`` never needs a database.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "ARTIFACTS_ENV",
    "DATABASE_ENV",
    "DEFAULT_ARTIFACT_ROOT",
    "DEFAULT_DATABASE_URL",
    "artifact_root_of",
    "display_url",
    "resolve_db_url",
]

#: The database every command uses unless told otherwise: a SQLite file under
#: the current folder.
DEFAULT_DATABASE_URL = "sqlite:///.reelbench/reelbench.db"

#: Where artifacts go by default: under the current folder.
DEFAULT_ARTIFACT_ROOT = Path(".reelbench/artifacts")

DATABASE_ENV = "REELBENCH_DATABASE_URL"
ARTIFACTS_ENV = "REELBENCH_ARTIFACTS"

# scheme://user:PASSWORD@host... ; the password ends at the last '@' before
# the host (passwords may contain '@' when not percent-encoded).
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):(?P<pw>.*)@")


def display_url(url: str) -> str:
    """``url`` as it may be printed: any password replaced by ``***``.

    Every message, log line and report that names a database URL goes through
    this, so a password given in ``--db`` or ``REELBENCH_DATABASE_URL`` never
    reaches a terminal, a CI log or a file. Works on malformed URLs too (the
    error message of a bad URL must not leak it either).
    """
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url, count=1)
    # Query-string passwords (``?password=...``), as libpq accepts them.
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", masked)


def resolve_db_url(db: str | None) -> str:
    """The database URL to use: ``db``, else ``$REELBENCH_DATABASE_URL``, else the default.

    The default is ``sqlite:///.reelbench/reelbench.db`` under the current folder,
    the same as the command line's.
    """
    if db:
        return db
    return os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE_URL


def artifact_root_of(root: str | os.PathLike[str]) -> Path | str:
    """The artifact root as given: an ``s3://`` URI stays a string, a folder becomes absolute."""
    text = os.fspath(root)
    if text.startswith("s3://"):
        return text.rstrip("/")
    return Path(text).expanduser().resolve()
