"""Where an item's image and reference video are, as stored and as opened.

Paths inside the spec's folder are stored relative to it, so the same spec
submitted from another checkout (another absolute path) is the same
experiment; they are opened relative to the folder of the spec as last
submitted. Paths outside that folder are stored absolute.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["item_file", "stored_path"]


def stored_path(path: Path | None, spec_dir: Path | None) -> str | None:
    """How an item's file is stored: relative to ``spec_dir`` when inside it."""
    if path is None:
        return None
    if spec_dir is not None:
        try:
            return path.resolve().relative_to(spec_dir.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def item_file(stored: str | None, spec_dir: Path | None) -> str | None:
    """A stored item path as a path to open (relative ones against ``spec_dir``)."""
    if not stored:
        return None
    path = Path(stored)
    if not path.is_absolute() and spec_dir is not None:
        path = spec_dir / path
    return str(path)
