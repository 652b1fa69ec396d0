"""Assertions shared by test modules."""

from __future__ import annotations

import numpy as np


def same_detections(expected, got) -> None:  # noqa: ANN001
    """Two lists of :class:`Detections` are equal, box for box, bit for bit."""
    assert len(expected) == len(got)
    for ref, out in zip(expected, got):
        np.testing.assert_array_equal(ref.boxes, out.boxes)
        np.testing.assert_array_equal(ref.scores, out.scores)
        np.testing.assert_array_equal(ref.labels, out.labels)
