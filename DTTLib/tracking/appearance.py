"""Appearance similarity of two lesions, used only to resolve the ambiguous distance zone.

Pluggable: any ``Similarity = Callable[[LesionObservation, LesionObservation], float | None]``
returning a value in [0, 1] (1 = same appearance) or ``None`` when it cannot tell. The
default compares intensity histograms inside the masks (z-scored per scan, so a global
intensity change between scanners or sequences does not count as a different lesion);
:func:`embedding_cosine` uses embeddings (e.g. MedSigLIP) when the observations carry them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from DTTLib.tracking.records import LesionObservation

Similarity = Callable[["LesionObservation", "LesionObservation"], "float | None"]
BINS = np.linspace(-3.0, 3.0, 25)


def histogram_similarity(a: "LesionObservation", b: "LesionObservation") -> float | None:
    """Bhattacharyya coefficient of the two in-mask intensity histograms (1 = identical)."""
    ha, hb = a.histogram(), b.histogram()
    if ha is None or hb is None:
        return None
    return float(np.sum(np.sqrt(ha * hb)))


def embedding_cosine(a: "LesionObservation", b: "LesionObservation") -> float | None:
    """Cosine similarity of embeddings, negatives clipped to 0; None if either lacks one."""
    if a.embedding is None or b.embedding is None:
        return None
    x, y = np.asarray(a.embedding, float), np.asarray(b.embedding, float)
    n = float(np.linalg.norm(x) * np.linalg.norm(y))
    return None if n == 0 else max(0.0, float(np.dot(x, y) / n))


def default_similarity(a: "LesionObservation", b: "LesionObservation") -> float | None:
    """Embeddings when both have them, else intensity histograms."""
    s = embedding_cosine(a, b)
    return s if s is not None else histogram_similarity(a, b)
