"""Where retina-edge keeps what it can recompute: ``$RETINA_EDGE_CACHE`` or ``~/.cache/retina-edge``.

Calibration statistics, the measured backend choice and Triton's backend folder live under it;
deleting it only costs the time to recompute them (no torch).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get("RETINA_EDGE_CACHE", Path.home() / ".cache" / "retina-edge"))
