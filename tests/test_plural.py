"""One way to count things in messages (``retina_edge.progress.plural``): the report, the reconnect
messages, ``detect``'s lost-source error and the stream choice all say ``1 attempt``/``2 attempts``
through it, and no library module spells the plural out again."""

from __future__ import annotations

import re
from pathlib import Path

from retina_edge.progress import plural

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("retina_edge", "export", "runtime", "calib")
#: An inline plural: ``{'s' * (n != 1)}``, ``{'' if n == 1 else 's'}``, ``{"s" if n > 1 else ""}``.
INLINE = re.compile(r"""['"]s['"] \* \(|else ['"]s['"]|['"]s['"] if """)


def test_plural_counts_as_the_messages_did():
    assert [plural(n, "attempt") for n in (0, 1, 2)] == ["0 attempts", "1 attempt", "2 attempts"]
    assert plural(1, "reconnect attempt") == "1 reconnect attempt"


def test_the_stream_choice_counts_with_it():
    from retina_edge.runtime.core.streams_choice import StreamsChoice

    assert StreamsChoice(2, "faster", {1: 2.0, 2: 3.5}).describe() == "2 (faster: 1 stream 2.00 frames/s, 2 streams 3.50 frames/s)"


def test_no_module_spells_a_plural_out_again():
    """Before: four copies (quality/report.py, runtime/video/sources.py, cli/stream.py, runtime/core/streams_choice.py)."""
    found = [f"{path.relative_to(ROOT)}:{number}" for folder in LIBRARY for path in sorted((ROOT / folder).rglob("*.py"))
             if path.name != "progress.py" for number, line in enumerate(path.read_text().splitlines(), 1)
             if INLINE.search(line)]
    assert not found, f"use retina_edge.progress.plural: {found}"
