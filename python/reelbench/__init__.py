"""reelbench: run video-generation experiments and measure their outputs."""

from reelbench._native import __version__
from reelbench.results import load_results

__all__ = ["__version__", "load_results"]
