"""Re-create ``refs/sunset.mp4``, the reference video of the demo's ``sunset`` item.

The file is committed so the demo needs nothing but reelbench; this script
shows where it comes from. It is the synthetic provider's ``orbit`` pattern for
a fixed seed, so it is byte-for-byte reproducible on any machine with the same
PyAV/x264 build (and visually identical everywhere)::

    python examples/make_reference.py
"""

from __future__ import annotations

from pathlib import Path

from reelbench.providers.base import GenerationRequest
from reelbench.providers.synthetic import render_video

REQUEST = GenerationRequest(
    provider="synthetic",
    model="orbit",
    params={"seconds": 2, "width": 320, "height": 240, "fps": 12},
    prompt="a sunset over a calm sea",
    seed=2026,
)


def main() -> None:
    """Write the reference video next to this script."""
    dest = Path(__file__).resolve().parent / "refs" / "sunset.mp4"
    dest.parent.mkdir(parents=True, exist_ok=True)
    render_video(REQUEST, dest)
    print(f"wrote {dest} ({dest.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
