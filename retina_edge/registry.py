"""One registry for every door, and one plugin entry point for all of them (no torch).

Model parts, architectures, precision recipes, backends, graph tails and trackers are each a
:class:`Registry`: a name -> entry table with ``register`` (also a decorator), ``get`` (a one-line
error naming what is registered), ``names`` and ``unregister``. What reads a registry (the CLI's
choices and help, ``Detector``, export, verify, Triton, DeepStream) sees every entry, built in or not.

A package installed next to retina-edge adds entries through the ``retina_edge.plugins`` entry-point
group: each entry names a function that registers what the package brings, of any kind::

    # the plugin's pyproject.toml
    [project.entry-points."retina_edge.plugins"]
    mine = "my_package.plugin:register"

    # my_package/plugin.py
    def register() -> None:
        from retina_edge.model.archs import Arch, register_arch
        from retina_edge.runtime.backends import register_backend
        register_arch(Arch("mynet_fpn", depth=0, backbone="mynet"))
        register_backend("mine", factory=..., module="my_engine")

The CLI loads the plugins at start; in Python they load on a registry's first lookup (or call
:func:`load_plugins`). A plugin that fails to load is logged and skipped: the built-in entries stay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from retina_edge.errors import RetinaEdgeError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "retina_edge.plugins"
T = TypeVar("T")

_plugins_called: set[str] = set()
_plugins_scanned = False
_plugins_scanning = False
#: Held while the plugins register: a first lookup in another thread waits for them all.
_plugins_loading = threading.RLock()


def load_plugins() -> None:
    """Call each ``retina_edge.plugins`` entry point not called yet (its function registers the
    plugin's entries). Safe to call again after installing a plugin into a running process."""
    global _plugins_scanned, _plugins_scanning
    with _plugins_loading:
        if _plugins_scanning:  # a plugin's own lookup, in this thread, while the plugins register
            return
        _plugins_scanning = True
        try:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                if entry.value not in _plugins_called:
                    _plugins_called.add(entry.value)
                    _call_plugin(entry)
        finally:
            _plugins_scanning, _plugins_scanned = False, True


def _call_plugin(entry) -> None:  # noqa: ANN001 - an importlib.metadata.EntryPoint
    try:
        entry.load()()
    except Exception as error:  # noqa: BLE001 - one broken plugin must not take the built-in entries down
        logger.warning("plugin %s (%s) failed to register: %s", entry.name, entry.value, error)


class Registry(Generic[T]):
    """Name -> entry, for one kind of thing (``kind`` names it in messages).

    ``builtins``: a function that registers the built-in entries, called once before the first
    ``register`` or lookup (for entries defined in modules that would import this one). Lookups
    (``get``, ``names``, ``items``, ``in``) and ``unregister`` also load the plugins once. A lookup
    while another thread loads the built-ins or the plugins waits for them. ``error``: the
    :class:`RetinaEdgeError` subclass raised for unknown or duplicate names.
    """

    def __init__(self, kind: str, *, builtins: Callable[[], None] | None = None,
                 error: type[RetinaEdgeError] = RetinaEdgeError) -> None:
        self.kind, self._error = kind, error
        self._entries: dict[Hashable, T] = {}
        self._builtins = builtins
        self._ready = builtins is None  # True once the built-ins have all registered
        # Held while the built-ins register: a lookup in another thread waits for all of them, not
        # "unknown" in between. Reentrant: the built-ins' own register() calls pass.
        self._loading = threading.RLock()

    def register(self, name: Hashable, entry: T | None = None, *, replace: bool = False):  # noqa: ANN201
        """Add ``entry`` under ``name`` (a second one needs ``replace``); returns it. Without
        ``entry``, a decorator that registers the function or class it decorates."""
        def add(item: T) -> T:
            self._load_builtins(wait=False)
            if name in self._entries and not replace:
                raise self._error(f"a {self.kind} named {_show(name)} is already registered")
            self._entries[name] = item
            return item

        return add(entry) if entry is not None else add

    def unregister(self, name: Hashable) -> None:
        self._load()  # else built-ins and plugins loaded by the next lookup would bring ``name`` back
        self._entries.pop(name, None)

    def get(self, name: Hashable) -> T:
        self._load()
        if name not in self._entries:
            raise self._error(f"unknown {self.kind} {_show(name)}; expected one of: "
                              f"{', '.join(_show(key) for key in self._entries) or 'none registered'}")
        return self._entries[name]

    def names(self) -> tuple:
        self._load()
        return tuple(self._entries)

    def items(self) -> tuple[tuple[Hashable, T], ...]:
        self._load()
        return tuple(self._entries.items())

    def values(self) -> tuple[T, ...]:
        self._load()
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _load_builtins(self, *, wait: bool = True) -> None:
        """Register the built-ins once. A ``register`` (``wait=False``) does not wait for another
        thread's loading: it may run from a module import that the loading thread waits for."""
        if self._ready or not self._loading.acquire(blocking=wait):
            return
        try:
            builtins, self._builtins = self._builtins, None  # cleared first: the builtins register here too
            if builtins is not None:
                try:
                    builtins()
                finally:
                    self._ready = True
        finally:
            self._loading.release()

    def _load(self) -> None:
        self._load_builtins()
        if not _plugins_scanned:  # once per process: scanning the installed distributions takes milliseconds
            load_plugins()


def _show(name: Hashable) -> str:
    """A name as messages show it: ``'int8'``, or ``int8 for cpu`` for a (precision, target) key."""
    return " for ".join(map(str, name)) if isinstance(name, tuple) else repr(name)
