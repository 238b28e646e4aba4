"""``python -m reelbench``: the command line."""

from reelbench.cli import entry

entry()
