"""Inference backends: each runs a batch through a deployed graph and returns outputs by name.

:class:`Backend` is what a backend is, :class:`BackendOptions` how one is loaded, and
:func:`register_backend` the door for a new one (:mod:`.registry`). Optional engines are imported
only when their backend is built.
"""

from retina_edge.runtime.backends.base import Backend, BackendOptions
from retina_edge.runtime.backends.registry import (
    BackendSpec,
    backend_choices,
    backend_names,
    get_backend,
    register_backend,
    unregister_backend,
)

__all__ = ["Backend", "BackendOptions", "BackendSpec", "backend_choices", "backend_names", "get_backend",
           "register_backend", "unregister_backend"]
