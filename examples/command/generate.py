"""A toy local "model" for reelbench's ``command`` provider.

reelbench starts this program once per request (no shell), writes the request
as JSON to its stdin::

    {"prompt": "...", "seed": 123, "params": {...}, "item_id": "...",
     "image": null, "model": "..."}

and expects an MP4 at the path in ``$REELBENCH_OUTPUT``. Exit 0 on success;
exit 75 to ask for a retry (a temporary problem: GPU busy, rate limit); any
other non-zero exit fails the run for good with the last lines of stderr as
its message.

Replace the drawing below with a call to your own model. The video here is
a field of moving stripes whose colours come from the prompt and whose
motion comes from the seed: the same request always gives the same video.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import av
import numpy as np


def main() -> int:
    """Read the request, render the video, write it where reelbench asked."""
    request = json.load(sys.stdin)
    params = request.get("params", {})
    width = int(params.get("width", 320))
    height = int(params.get("height", 240))
    fps = int(params.get("fps", 12))
    frames = max(1, round(float(params.get("seconds", 1.5)) * fps))
    output = os.environ.get("REELBENCH_OUTPUT")
    if not output:
        print("REELBENCH_OUTPUT is not set: run me through reelbench", file=sys.stderr)
        return 2

    digest = hashlib.sha256(request["prompt"].encode()).digest()
    colour_a = np.frombuffer(digest[:3], np.uint8).astype(np.float32)
    colour_b = np.frombuffer(digest[3:6], np.uint8).astype(np.float32)
    rng = np.random.default_rng(int(request["seed"]))
    speed, angle = rng.uniform(0.5, 2.0), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = xx * np.cos(angle) + yy * np.sin(angle)

    with av.open(output, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(frames):
            wave = 0.5 + 0.5 * np.sin(direction / 12.0 - i * speed * 0.6)
            rgb = colour_a * wave[..., None] + colour_b * (1 - wave[..., None])
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
