"""A stand-in ``tensorrt`` module generated from the real bindings.

Enums, ``Logger``, ``Dims``, ``nptype``, the calibrator base classes and ``__version__`` are the
real module's. The factories that need TensorRT's native libraries (``Builder``, ``Runtime``,
``OnnxParser``) return stand-in objects whose every attribute is checked against the real class:
a method must exist and the call must bind to one of its real pybind11 overloads (argument count,
keyword names, types, enums), its result must have the declared type; a property write must name a
real property that has a setter and pass its setter's type; reads and calls the real class has but
the behaviour model lacks raise :class:`NotModelled`. The behaviour is :mod:`standin_model`'s (shapes,
profiles, plans, and execution through ONNX Runtime on the cuda stand-in's memory): it checks API
use and data flow, it proves no TensorRT numbers.
"""

from __future__ import annotations

import importlib.machinery
import types

from signatures import NotModelled, bind, check_value, overloads


class StandIn:
    """Base of the generated classes; ``real_class`` is the real pybind11 class it stands for."""

    real_class: type
    real_module: types.ModuleType

    def __init__(self, impl) -> None:  # noqa: ANN001
        object.__setattr__(self, "_impl", impl)

    def __getattr__(self, name: str):  # noqa: ANN204 - only called for names not on the stand-in itself
        real_attribute = _real_attribute(self.real_class, name)
        impl = object.__getattribute__(self, "_impl")
        if not hasattr(impl, name):
            raise NotModelled(f"{self.real_class.__name__}.{name} exists in TensorRT but the stand-in does not model it")
        if isinstance(real_attribute, property):
            value = getattr(impl, name)
            for overload in overloads(real_attribute.fget, ""):
                _check_result(overload.returns, value, self.real_module, f"{self.real_class.__name__}.{name}")
            return value
        return _checked_method(real_attribute, name, getattr(impl, name), self.real_module,
                               f"{self.real_class.__name__}.{name}")

    def __setattr__(self, name: str, value) -> None:  # noqa: ANN001
        real_attribute = _real_attribute(self.real_class, name)
        if not isinstance(real_attribute, property) or real_attribute.fset is None:
            raise AttributeError(f"property '{name}' of '{self.real_class.__name__}' object has no setter")
        bind(overloads(real_attribute.fset, ""), name, (value,), {}, self.real_module)
        impl = object.__getattribute__(self, "_impl")
        if not hasattr(impl, name):
            raise NotModelled(f"{self.real_class.__name__}.{name} can be set in TensorRT but the stand-in does not model it")
        setattr(impl, name, value)


def impl_of(stand_in):  # noqa: ANN001, ANN201
    """The behaviour object behind a stand-in (None stays None)."""
    return None if stand_in is None else object.__getattribute__(stand_in, "_impl")


def _real_attribute(real_class: type, name: str):  # noqa: ANN202
    try:
        return getattr(real_class, name)
    except AttributeError:
        raise AttributeError(f"'{real_class.__module__}.{real_class.__name__}' object has no attribute '{name}'") from None


def _checked_method(real_method, name: str, behaviour, real, where: str):  # noqa: ANN001, ANN202
    candidates = overloads(real_method, name)
    if not candidates:
        raise NotModelled(f"no signature found in the docstring of {where}")

    def method(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        overload, arguments = bind(candidates, name, args, kwargs, real)
        result = behaviour(**arguments)
        _check_result(overload.returns, result, real, where)
        return result

    return method


def _check_result(annotation: str, value, real, where: str) -> None:  # noqa: ANN001
    """The behaviour model must return what the real method declares (None for a null object)."""
    if annotation == "None":
        assert value is None, f"{where} returns None in TensorRT, the model returned {value!r}"
        return
    try:
        accepted = check_value(annotation, value, real)
    except NotModelled:
        return  # e.g. numpy arrays or C++ names in the declaration: not compared
    assert accepted or (value is None and "." in annotation), f"{where} declares {annotation}, the model returned {value!r}"


def stand_in_class(real_class: type, real, *, dunders: dict | None = None) -> type:  # noqa: ANN001
    """A :class:`StandIn` subclass for ``real_class`` (special methods cannot go through __getattr__)."""
    namespace = {"real_class": real_class, "real_module": real, **(dunders or {})}
    return type(real_class.__name__, (StandIn,), namespace)


def factory(real_class: type, real, make_impl):  # noqa: ANN001, ANN201
    """A constructor that binds its arguments against ``real_class.__init__`` and wraps ``make_impl``'s object."""
    candidates = overloads(real_class.__init__, "__init__")
    cls = stand_in_class(real_class, real)

    def construct(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        _, arguments = bind(candidates, "__init__", args, kwargs, real)
        return cls(make_impl(**arguments))

    construct.__name__ = real_class.__name__
    return construct


def make_module(real, factories: dict) -> types.ModuleType:  # noqa: ANN001
    """The stand-in ``tensorrt``: ``factories`` (name -> constructor) over the real module."""
    module = types.ModuleType("tensorrt", f"stand-in over the real TensorRT {real.__version__} bindings")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__getattr__ = lambda name: getattr(real, name)  # noqa: PLW0108 - enums, Logger, Dims: the real ones
    module.__dict__.update(factories)
    return module
