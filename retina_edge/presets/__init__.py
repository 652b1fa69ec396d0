"""Preset models shipped with the toolkit, reachable as ``--weights preset:NAME`` (no torch).

``synth``: a small ResNet-18-FPN v2 (stem width 32, FPN 64 channels, 2 GroupNorm head convs,
anchors 16..256, input 192x192), trained from scratch on 800 synthetic images: 1850 AdamW
iterations under bfloat16 autocast, under 5 minutes on a 2-core AVX512-BF16 CPU. Reproduce it
(``runs/preset/model_final.pth`` is the shipped file, conv weights stored in float16) with::

    retina-edge synth --out data/synth --images 1000 --seed 0 --sides 176 224 --max-object 200
    retina-edge train --config retina_edge/presets/synth_train.json --data data/synth --out runs/preset
"""

from __future__ import annotations

from pathlib import Path

from retina_edge.errors import WeightsError
from retina_edge.data.synth import SynthConfig

PRESET_DIR = Path(__file__).parent

#: name -> checkpoint file inside this package
PRESETS = {"synth": "synth.pth"}
#: The synthetic data the ``synth`` preset was trained on (image sides 176..224 px).
PRESET_SYNTH_DATA = SynthConfig(num_images=1000, seed=0, min_side=176, max_side=224, max_object=200)


def preset_checkpoint_path(name: str) -> Path:
    """Path of a shipped preset checkpoint; a clear error for unknown names or a broken install."""
    if name not in PRESETS:
        raise WeightsError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    path = PRESET_DIR / PRESETS[name]
    if not path.is_file():
        raise WeightsError(f"preset {name!r} is missing its checkpoint {path}; reinstall retina-edge")
    return path
