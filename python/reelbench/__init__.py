"""reelbench: run video-generation experiments and measure their outputs."""

from reelbench._native import __version__

__all__ = ["__version__"]
