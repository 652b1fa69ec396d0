"""The DeepStream folder's config files and the edits made to them since retina-edge wrote them.

Users tune a written config by hand (an nvinfer ``interval``, a source's ``uri``, the sink); writing
the folder again replaced such edits silently. So every write records what it wrote
(:data:`MANIFEST`: each file's SHA-256) and a later write refuses, before any work, to replace a
file whose content is no longer what retina-edge wrote there (edited, or written by someone else),
unless asked to (``replace_edited``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from retina_edge.atomic import write_text_atomic
from retina_edge.errors import RetinaEdgeError

MANIFEST = ".retina-edge.json"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _written(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of what retina-edge last wrote into ``folder`` (empty if unknown)."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text()).get("written", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def edited_files(folder: str | Path, names: Iterable[str]) -> list[str]:
    """Those of ``names`` present in ``folder`` whose content is not what retina-edge last wrote there."""
    folder = Path(folder)
    written = _written(folder)
    return [name for name in names if (folder / name).is_file() and written.get(name) != _digest((folder / name).read_bytes())]


def check_unedited(folder: str | Path, names: Iterable[str], *, replace_edited: bool = False) -> None:
    """Raise before any work if writing ``names`` into ``folder`` would replace a file edited since
    retina-edge wrote it (or one it did not write), unless ``replace_edited``."""
    edited = [] if replace_edited else edited_files(folder, names)
    if edited:
        shown = ", ".join(edited[:3]) + (f" and {len(edited) - 3} more" if len(edited) > 3 else "")
        raise RetinaEdgeError(f"{Path(folder)} holds {shown}, changed since retina-edge wrote {'it' if len(edited) == 1 else 'them'} "
                              "(or not written by it): move them away, write another folder, or replace them on purpose",
                              option="replace_edited")


def write_texts(folder: str | Path, texts: dict[str, str]) -> list[Path]:
    """Write each ``name: text`` into ``folder`` (atomically) and record what was written."""
    folder = Path(folder)
    written = _written(folder)
    for name, text in texts.items():
        write_text_atomic(folder / name, text)
        written[name] = _digest(text.encode("utf-8"))
    write_text_atomic(folder / MANIFEST, json.dumps({"written": written}, indent=2, sort_keys=True))
    return [folder / name for name in texts]
