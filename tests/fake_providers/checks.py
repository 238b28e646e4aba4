"""What the direct-provider tests check after a whole experiment: outputs, and no secret."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from processor_support import Lab

from fake_providers import everything_stored

__all__ = ["assert_key_kept_out", "write_png"]


def write_png(path: Path, width: int = 64, height: int = 48) -> Path:
    """A real PNG picture (a gradient) to serve as an item's image."""
    import cv2

    y, x = np.mgrid[0:height, 0:width]
    picture = np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    assert cv2.imwrite(str(path), picture)
    return path


def assert_key_kept_out(
    lab: Lab, experiment: str, out: Path, key: str, logged: str, messages: list[str]
) -> None:
    """``key`` is in no table, artifact, report (HTML, JSON, CSV), log line or error."""
    from reelbench.report import load_report, write_csv, write_report_files

    report = load_report(experiment, lab.db.url)
    html, json_doc = write_report_files(report, out, artifact_root=lab.artifacts)
    csv = io.StringIO()
    write_csv(report, csv)
    reported = html.read_text() + json_doc.read_text() + csv.getvalue()
    stored = everything_stored(lab.db.engine, lab.artifacts)
    assert key not in stored
    assert key not in reported
    assert key not in logged
    assert all(key not in m for m in messages)
    assert "[redacted]" in stored, "the echoed key was replaced in the recorded error"
