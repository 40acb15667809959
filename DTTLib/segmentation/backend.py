"""What every box-prompt segmentation model offers the 3-D propagation.

Two calls, so an image embedding is computed once per slice and reused when the box moves:
``encode`` a prepared slice, then ``decode`` any number of boxes on it. Backends (LiteMedSAM,
MedSAM ViT-B, …) implement this protocol; propagation, caching and the CLI only see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SliceEmbedding:
    """A backend's encoding of one slice, plus what is needed to map boxes and masks back."""

    features: Any                 # backend-specific (e.g. a torch tensor)
    original_shape: tuple[int, int]  # (rows, columns) of the slice given to ``encode``
    backend: str


@dataclass(frozen=True)
class SlicePrediction:
    mask: np.ndarray              # bool (rows, columns), same shape as the encoded slice
    score: float                  # the model's own quality estimate (e.g. predicted IoU)


@runtime_checkable
class BoxPromptSegmenter(Protocol):
    """A 2-D box-prompt model. Boxes are (x0, y0, x1, y1) = (i0, j0, i1, j1) in slice pixels."""

    name: str
    device: str

    def encode(self, slice_rgb: np.ndarray) -> SliceEmbedding:
        """``slice_rgb``: uint8 (rows, columns, 3), already windowed/normalised for display."""
        ...

    def decode(self, embedding: SliceEmbedding, box_xyxy: tuple[float, float, float, float]) -> SlicePrediction:
        ...

    def encode_batch(self, slices_rgb: list[np.ndarray]) -> list[SliceEmbedding]:
        """Several slices at once (GPU batching); a plain loop is a valid implementation."""
        ...
