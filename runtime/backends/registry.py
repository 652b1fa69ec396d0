"""The backends the toolkit knows, by name: the one place a new inference engine is plugged in.

    from retina_edge.runtime.backends import register_backend

    register_backend("mine", factory=lambda path, options, engine: MyBackend(path, options),
                     module="my_engine", install_hint="pip install my-engine", devices=("cpu",))

``Detector(path, backend="mine")``, the CLI's ``--backend`` choices and help, ``backend="auto"``
(for backends registered with ``auto=True``) and the install hints all read this registry
(:data:`BACKENDS`, a :class:`retina_edge.registry.Registry`). The built-in backends (onnxruntime,
openvino, tensorrt) register here like any other, from their own modules; an installed package adds
its own from its ``retina_edge.plugins`` entry point (:mod:`retina_edge.registry`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retina_edge.contract import is_engine_path
from retina_edge.errors import RetinaEdgeError
from retina_edge.registry import Registry
from retina_edge.runtime.backends.base import Backend, BackendOptions

#: The kinds of model file a backend loads: an ONNX graph, or a retina-edge TensorRT engine file.
FILE_KINDS = ("onnx", "engine")
#: The built-in backends, in ``auto``'s preference order (whatever order their modules were imported in).
_BUILTINS = ("onnxruntime", "openvino", "tensorrt")

#: ``factory(path, options, engine) -> Backend``; ``engine``: the parsed engine file (engine kinds), else None.
Factory = Callable[[Path, BackendOptions, object], Backend]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend. ``module``: the package whose presence means it is installed (None:
    always); ``devices``: the device names it takes (help text, and ``auto``'s device routing);
    ``auto``: a candidate that ``backend="auto"`` measures on ONNX files; ``distributions``: the
    pip distributions that provide ``module`` (their versions key ``auto``'s cached choice)."""

    name: str
    factory: Factory
    file_kind: str = "onnx"
    module: str | None = None
    install_hint: str = ""
    devices: tuple[str, ...] = ()
    auto: bool = False
    distributions: tuple[str, ...] = ()
    description: str = ""

    def installed(self) -> bool:
        return self.module is None or importlib.util.find_spec(self.module) is not None

    def takes_device(self, device: str) -> bool:
        """Whether ``device`` (e.g. ``cuda``, ``GPU.1``) is one of this backend's device kinds."""
        kind = device.split(".")[0].split(":")[0].upper()
        return kind in {name.upper() for name in self.devices}

    def open(self, path: Path, options: BackendOptions, engine: object = None) -> Backend:
        return self.factory(Path(path), options, engine)


def _import_builtins() -> None:
    """The built-in backends register from their own modules, in ``auto``'s preference order."""
    for name in _BUILTINS:
        importlib.import_module(f"retina_edge.runtime.backends.{name}_backend")


#: Backend name -> :class:`BackendSpec`.
BACKENDS: Registry[BackendSpec] = Registry("backend", builtins=_import_builtins)


def register_backend(name: str, *, factory: Factory, file_kind: str = "onnx", module: str | None = None,
                     install_hint: str = "", devices: tuple[str, ...] = (), auto: bool = False,
                     distributions: tuple[str, ...] = (), description: str = "", replace: bool = False) -> BackendSpec:
    """Make backend ``name`` known (see :class:`BackendSpec`); a second registration of a name is
    refused unless ``replace``. ``auto`` is the name of the automatic choice and cannot be taken."""
    if name == "auto" or not name:
        raise RetinaEdgeError(f"a backend cannot be named {name!r}")
    if file_kind not in FILE_KINDS:
        raise RetinaEdgeError(f"unknown file kind {file_kind!r} for backend {name!r}; expected one of {FILE_KINDS}")
    spec = BackendSpec(name=name, factory=factory, file_kind=file_kind, module=module,
                       install_hint=install_hint or _default_hint(module), devices=tuple(devices), auto=auto,
                       distributions=tuple(distributions) or ((module,) if module else ()), description=description)
    return BACKENDS.register(name, spec, replace=replace)


def unregister_backend(name: str) -> None:
    """Forget backend ``name`` (for tests and plugins that replace themselves)."""
    BACKENDS.unregister(name)


def backend_specs() -> tuple[BackendSpec, ...]:
    """Every registered backend, built-ins first (in ``auto``'s preference order), then in registration order."""
    specs = dict(BACKENDS.items())
    order = [name for name in _BUILTINS if name in specs] + [name for name in specs if name not in _BUILTINS]
    return tuple(specs[name] for name in order)


def backend_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in backend_specs())


def backend_choices() -> tuple[str, ...]:
    """What a ``backend`` argument accepts: ``auto`` and every registered name."""
    return ("auto", *backend_names())


def get_backend(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise RetinaEdgeError(f"unknown backend {name!r}; expected one of {backend_choices()}")
    return BACKENDS.get(name)


def auto_candidates() -> tuple[BackendSpec, ...]:
    """The backends ``backend="auto"`` chooses among for ONNX files, in preference order."""
    return tuple(spec for spec in backend_specs() if spec.auto)


def backends_help() -> str:
    """One line for a ``--backend`` option: each backend and its devices."""
    parts = [f"{spec.name}{' (' + '|'.join(spec.devices) + ')' if spec.devices else ''}" for spec in backend_specs()]
    return "auto (measured among the installed CPU backends for ONNX files; TensorRT for engines), " + ", ".join(parts)


def backend_install_hint(module: str) -> str | None:
    """The install line of the registered backend that needs ``module`` (None if none does)."""
    top = module.split(".")[0]
    for spec in backend_specs():
        if spec.module and spec.module.split(".")[0] == top and spec.install_hint:
            return spec.install_hint
    return None


def choose_backend(path: str | os.PathLike, requested: str) -> str:
    """The backend for ``path``, or ``"auto"`` when an ONNX model's backend is to be measured
    (:mod:`~retina_edge.runtime.core.backend_choice`). An engine file runs on the engine backend."""
    kind = "engine" if is_engine_path(path) else "onnx"
    if requested == "auto":
        if kind == "onnx":
            return "auto"
        return next(spec.name for spec in backend_specs() if spec.file_kind == "engine")
    spec = get_backend(requested)
    if spec.file_kind != kind:
        runs = " or ".join(other.name for other in backend_specs() if other.file_kind == kind)
        if kind == "engine":
            raise RetinaEdgeError(f"{path} is a TensorRT engine: only the {runs} backend can run it", option="backend")
        raise RetinaEdgeError(f"{path} is an ONNX model: build an engine from it first, or run it with {runs} "
                              "(ONNX Runtime's TensorRT execution provider is its device tensorrt)", option="backend")
    return requested


def _default_hint(module: str | None) -> str:
    from retina_edge.optional import install_hint

    return (install_hint(module) or f"pip install {module}") if module else ""
