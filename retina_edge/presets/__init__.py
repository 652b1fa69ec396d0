"""Preset models shipped with the toolkit, reachable as ``--weights preset:NAME`` (no torch).

``synth``: a small ResNet-18-FPN (stem width 32, FPN 64 channels, 2 head convs, anchors 16..256,
input 256x256) trained on ``retina-edge synth --images 1000 --seed 0``. Reproduce it with::

    retina-edge synth --out data/synth --images 1000 --seed 0
    retina-edge train --config retina_edge/presets/synth_train.json --data data/synth --out runs/preset
"""

from __future__ import annotations

from pathlib import Path

from retina_edge.errors import WeightsError

PRESET_DIR = Path(__file__).parent

#: name -> checkpoint file inside this package
PRESETS = {"synth": "synth.pth"}


def preset_checkpoint_path(name: str) -> Path:
    """Path of a shipped preset checkpoint; a clear error for unknown names or a broken install."""
    if name not in PRESETS:
        raise WeightsError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    path = PRESET_DIR / PRESETS[name]
    if not path.is_file():
        raise WeightsError(f"preset {name!r} is missing its checkpoint {path}; reinstall retina-edge")
    return path
