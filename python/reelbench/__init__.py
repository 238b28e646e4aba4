"""reelbench: run video-generation experiments and measure their outputs."""

from typing import TYPE_CHECKING, Any

from reelbench._native import __version__

if TYPE_CHECKING:
    from reelbench.judging import load_judgments
    from reelbench.results import load_results

__all__ = ["__version__", "load_judgments", "load_results"]


def __getattr__(name: str) -> Any:
    # load_results needs SQLAlchemy and Alembic (a third of a second to
    # import): load them when the function is first asked for, not with
    # every `import reelbench`.
    if name == "load_results":
        from reelbench.results import load_results

        return load_results
    if name == "load_judgments":
        from reelbench.judging import load_judgments

        return load_judgments
    raise AttributeError(f"module 'reelbench' has no attribute {name!r}")
