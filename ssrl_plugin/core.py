"""The data types every stage shares: a decoded source, a depth map, a generated sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

DEPTH_KINDS = ("metric", "relative", "inverse")


@dataclass(frozen=True)
class DepthMap:
    """Per-pixel depth aligned with the RGB image.

    ``values`` float32 (H, W); ``valid`` bool (H, W) (False where the sensor or the reconstruction gave
    nothing, NaN or inf); ``kind`` says how to read the values:

    - ``metric``: distance along the optical axis in metres (DIODE, NYU, KITTI after scaling);
    - ``relative``: larger = farther, arbitrary scale per image (MegaDepth);
    - ``inverse``: larger = NEARER (disparity, outputs of monocular depth models).
    """

    values: np.ndarray
    valid: np.ndarray
    kind: str = "metric"

    def __post_init__(self):
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"depth kind must be one of {DEPTH_KINDS}, got {self.kind!r}")
        if self.values.shape != self.valid.shape or self.values.ndim != 2:
            raise ValueError(f"depth values {self.values.shape} and valid mask {self.valid.shape} must be equal 2-D shapes")

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def farness(self) -> np.ndarray:
        """Float32 (H, W) where larger always means farther from the camera; NaN where invalid.

        Inverse depth is turned into distance by 1/x, so orderings and "in front of / behind" never flip.
        """
        v = self.values.astype(np.float32, copy=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            far = (1.0 / v) if self.kind == "inverse" else v.copy()
        far[~self.valid] = np.nan
        return far


@dataclass
class Source:
    """One decoded input: RGB uint8 (H, W, 3), optional aligned depth, and where it came from.

    ``id`` is stable across machines (a path relative to the source root, prefixed by the root's name) and
    seeds every sample drawn from this source; ``digest`` fingerprints the input file bytes (RGB then depth) as
    ``"xxh3_128:<hex>"`` (see :func:`ssrl_plugin.imaging.file_digest`). ``pil`` optionally keeps the decoded
    Pillow image of ``rgb`` so tasks that draw on it get a cheap copy instead of a conversion from the array.
    """

    id: str
    rgb: np.ndarray
    digest: str
    depth: DepthMap | None = None
    info: dict[str, Any] = field(default_factory=dict)  # paths, original size, resize scale, depth units...
    pil: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def image(self) -> Image.Image:
        """A new RGB image of ``rgb`` to draw on (a copy of the kept decode: ~4x cheaper than from the array)."""
        return self.pil.copy() if self.pil is not None else Image.fromarray(self.rgb, "RGB")

    def pil_view(self) -> Image.Image:
        """The RGB image of ``rgb`` for reading only (crops, resizes): never draw on it."""
        if self.pil is None:
            self.pil = Image.fromarray(self.rgb, "RGB")
        return self.pil


@dataclass
class Sample:
    """One generated pretext-task sample, before encoding.

    ``question`` holds exactly one ``<image>`` placeholder per entry of ``images``, in order.
    ``answer`` is the canonical answer string in the released Spatial-SSRL-81k format.
    ``metadata`` is JSON-serialisable and enough to re-derive ``answer`` independently.
    """

    task: str
    variant: str
    question: str
    images: list[Image.Image]
    answer: str
    metadata: dict[str, Any]
    options: dict[str, str] | None = None  # letter -> option text, for multiple-choice tasks
    # The video form of the same question (sequence tasks that offer one, when configured): ``video_question`` holds
    # one ``<video>`` placeholder per entry of ``videos``, each a clip of >= 2 frames; same answer and metadata.
    videos: list[list[Image.Image]] | None = None
    video_question: str | None = None

    def __post_init__(self):
        n = self.question.count("<image>")
        if n != len(self.images):
            raise ValueError(f"{self.task}: question has {n} <image> placeholders for {len(self.images)} images")
        if (self.videos is None) != (self.video_question is None):
            raise ValueError(f"{self.task}: videos and video_question come together")
        if self.videos is not None:
            n = self.video_question.count("<video>")  # type: ignore[union-attr]
            if n != len(self.videos) or "<image>" in self.video_question or any(len(v) < 2 for v in self.videos):  # type: ignore[operator]
                raise ValueError(f"{self.task}: video question has {n} <video> placeholders for {len(self.videos)} "
                                 f"clips (each needs >= 2 frames, and no <image>)")
