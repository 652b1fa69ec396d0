"""Anchor-to-ground-truth matching by IoU (torchvision's ``Matcher`` semantics)."""

from __future__ import annotations

import torch
from torch import Tensor

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


class Matcher:
    """Assigns each anchor the index of its best ground-truth box, or a negative code.

    IoU >= ``high`` -> gt index (foreground); IoU < ``low`` -> ``BELOW_LOW_THRESHOLD`` (background);
    in between -> ``BETWEEN_THRESHOLDS`` (ignored by the loss). With ``allow_low_quality_matches``
    every gt box also claims the anchors of its highest IoU even below ``high``, so that no object
    goes without a positive anchor.
    """

    def __init__(self, *, high: float, low: float, allow_low_quality_matches: bool) -> None:
        if low > high:
            raise ValueError(f"low threshold {low} must not exceed high threshold {high}")
        self.high = high
        self.low = low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Tensor:
        """``iou``: ``(G, N)`` gt-by-anchor IoU. Returns int64 ``(N,)`` matches or negative codes."""
        if iou.shape[0] == 0:
            return torch.full((iou.shape[1],), BELOW_LOW_THRESHOLD, dtype=torch.int64, device=iou.device)
        matched_vals, matches = iou.max(dim=0)
        all_matches = matches.clone()
        matches[matched_vals < self.low] = BELOW_LOW_THRESHOLD
        matches[(matched_vals >= self.low) & (matched_vals < self.high)] = BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1).values
            anchor_idxs = torch.where(iou == best_per_gt[:, None])[1]
            matches[anchor_idxs] = all_matches[anchor_idxs]
        return matches
