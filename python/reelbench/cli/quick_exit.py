"""A command's request to leave without the interpreter's teardown (see :func:`exit_quickly`).

Its own module, importing nothing: the executable's entry point reads it
after every command, ``reelbench --help`` included.
"""

from __future__ import annotations

__all__ = ["exit_quickly", "wants_quick_exit"]


_quick_exit = False


def exit_quickly() -> None:
    """Let the ``reelbench`` process skip the interpreter's teardown after this command.

    For short commands whose output is written and flushed (``metrics``):
    tearing down the imported extension modules (PyAV's above all) costs about
    20 ms, a twentieth of a 720p ``metrics`` call. Only the executable's entry
    point acts on it (see :func:`reelbench.cli.entry`); a command invoked in
    process (click's test runner, a script) is not affected.
    """
    global _quick_exit
    _quick_exit = True


def wants_quick_exit() -> bool:
    """True once the running command called :func:`exit_quickly`."""
    return _quick_exit
