"""The canonical format every output is normalized to (the spec's ``[canonical]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CanonicalFormat"]


class CanonicalFormat(BaseModel):
    """H.264 yuv420p MP4 (``+faststart``) at a fixed size and constant frame rate.

    The defaults suit side-by-side comparison in a browser: 720p, 24 fps,
    letterboxed (``pad``) so no content is lost, visually lossless CRF 18.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(1280, ge=16, le=7680, description="Output width in pixels (even).")
    height: int = Field(720, ge=16, le=4320, description="Output height in pixels (even).")
    fps: int = Field(24, ge=1, le=240, description="Constant output frame rate.")
    fit: Literal["pad", "crop", "stretch"] = Field(
        "pad",
        description="pad: letterbox, keep all; crop: fill, cut edges; stretch: ignore aspect.",
    )
    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor (lower is better).")
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"
    ] = Field("veryfast", description="x264 speed/size trade-off.")
    max_seconds: float = Field(10.0, gt=0, le=3600, description="Longer inputs are cut here.")
    keep_audio: bool = Field(False, description="Keep the first audio track (AAC).")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        # H.264 in yuv420p stores chroma at half resolution: odd sizes cannot be encoded.
        if value % 2:
            raise ValueError(f"must be even (H.264 yuv420p needs even sizes), got {value}")
        return value
