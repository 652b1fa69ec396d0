"""A stand-in for the part of rclpy the ROS 2 node uses (rclpy cannot be installed here).

Signatures and behaviour follow rclpy's Humble sources (github.com/ros2/rclpy, branch humble,
b488272b; the same in jazzy where these calls did not change): ``rclpy/__init__.py`` (``init(*, args,
context, domain_id, signal_handler_options)``, ``spin(node, executor=None)``, ``try_shutdown``, ``ok``
from ``utilities.py``), ``node.py`` (``Node(node_name, *, ...)``, ``declare_parameter(name, value=None,
descriptor=None, ignore_override=False)`` returning a ``Parameter`` with ``.value``, the override
from ``--ros-args -p`` winning and its type having to match the default's, ``get_parameter``,
``create_subscription(msg_type, topic, callback, qos_profile, *, callback_group, event_callbacks,
qos_overriding_options, raw=False)``, ``create_publisher(msg_type, topic, qos_profile, *, ...)``,
``get_logger``, ``destroy_node``), ``publisher.py`` (``publish(msg: MsgType | bytes)``, TypeError
otherwise), ``qos.py`` (``QoSProfile(**kwargs)``, KEEP_LAST needs a depth; ``ReliabilityPolicy``,
``HistoryPolicy`` values), ``executors.py`` (``ExternalShutdownException``), ``impl/rcutils_logger.py``
(``info/warning/error(message, **kwargs)``).

``install(monkeypatch)`` puts ``rclpy``, ``rclpy.node``, ``rclpy.qos``, ``rclpy.executors``,
``sensor_msgs.msg`` and ``vision_msgs.msg`` into ``sys.modules`` and returns the :class:`Ros` that
records what the node did; ``Ros.on_spin`` is what ``rclpy.spin`` runs (a test's scenario) before it
raises KeyboardInterrupt, as Ctrl-C does.
"""

from __future__ import annotations

import enum
import threading
import types
from collections.abc import Callable

import yaml


class ReliabilityPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2


class HistoryPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2


class QoSProfile:
    def __init__(self, **kwargs) -> None:
        if "history" not in kwargs:
            if "depth" not in kwargs:
                raise TypeError("QoSProfile requires either a history or a depth")
            kwargs["history"] = HistoryPolicy.KEEP_LAST
        if kwargs["history"] == HistoryPolicy.KEEP_LAST and not kwargs.get("depth"):
            raise ValueError("History set to KEEP_LAST without a depth setting.")
        self.history = kwargs["history"]
        self.depth = kwargs.get("depth", 0)
        self.reliability = kwargs.get("reliability", ReliabilityPolicy.RELIABLE)


class ExternalShutdownException(Exception):
    pass


class Parameter:
    def __init__(self, name: str, value) -> None:  # noqa: ANN001
        self.name, self.value = name, value


def _same_type(default, value) -> bool:  # noqa: ANN001
    if isinstance(default, list):
        return isinstance(value, list) and all(type(v) is type(default[0]) for v in value)
    return type(default) is type(value)


class Logger:
    def __init__(self, ros: Ros) -> None:
        self.ros = ros

    def _log(self, severity: str, message: str, **_kwargs) -> bool:
        self.ros.log.append((severity, message))
        return True

    def debug(self, message, **kwargs):  # noqa: ANN001, ANN201
        return self._log("debug", message, **kwargs)

    def info(self, message, **kwargs):  # noqa: ANN001, ANN201
        return self._log("info", message, **kwargs)

    def warning(self, message, **kwargs):  # noqa: ANN001, ANN201
        return self._log("warning", message, **kwargs)

    def error(self, message, **kwargs):  # noqa: ANN001, ANN201
        return self._log("error", message, **kwargs)


class Publisher:
    def __init__(self, msg_type: type, topic: str, qos_profile) -> None:  # noqa: ANN001
        self.msg_type, self.topic, self.qos_profile = msg_type, topic, qos_profile
        self.sent: list[bytes] = []
        self.published = threading.Condition()

    def publish(self, msg) -> None:  # noqa: ANN001
        if not isinstance(msg, (self.msg_type, bytes)):
            raise TypeError(f"Expected {self.msg_type}, got {type(msg)}")
        with self.published:
            self.sent.append(msg)
            self.published.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list:
        with self.published:
            assert self.published.wait_for(lambda: len(self.sent) >= count, timeout), (
                f"{self.topic}: {len(self.sent)} of {count} messages published")
            return list(self.sent)


class Subscription:
    def __init__(self, msg_type: type, topic: str, callback: Callable, qos_profile, raw: bool) -> None:  # noqa: ANN001
        self.msg_type, self.topic, self.callback, self.qos_profile, self.raw = msg_type, topic, callback, qos_profile, raw

    def deliver(self, data: bytes) -> None:
        """What the executor does when a message arrives: the callback gets the serialized bytes when raw."""
        assert self.raw, "the stand-in delivers serialized messages only"
        self.callback(data)


class Node:
    def __init__(self, node_name: str, *, context=None, cli_args=None, namespace=None,  # noqa: ANN001
                 use_global_arguments: bool = True, enable_rosout: bool = True, start_parameter_services: bool = True,
                 parameter_overrides=None, allow_undeclared_parameters: bool = False,  # noqa: ANN001
                 automatically_declare_parameters_from_overrides: bool = False) -> None:
        self.ros = _ROS
        assert self.ros.initialized, "rclpy.init() must come before creating a node"
        self.name = node_name
        self.parameters: dict[str, Parameter] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.publishers: dict[str, Publisher] = {}
        self.destroyed = False
        self._logger = Logger(self.ros)
        self.ros.nodes.append(self)

    def get_name(self) -> str:
        return self.name

    def get_logger(self) -> Logger:
        return self._logger

    def declare_parameter(self, name: str, value=None, descriptor=None, ignore_override: bool = False) -> Parameter:  # noqa: ANN001
        if name in self.parameters:
            raise RuntimeError(f"parameter {name} already declared")
        if name in self.ros.overrides and not ignore_override:
            override = self.ros.overrides[name]
            if value is not None and not _same_type(value, override):
                raise TypeError(f"parameter {name}: override {override!r} is not of the declared type {type(value)}")
            value = override
        self.parameters[name] = Parameter(name, value)
        return self.parameters[name]

    def get_parameter(self, name: str) -> Parameter:
        return self.parameters[name]

    def create_subscription(self, msg_type, topic: str, callback: Callable, qos_profile, *, callback_group=None,  # noqa: ANN001
                            event_callbacks=None, qos_overriding_options=None, raw: bool = False) -> Subscription:  # noqa: ANN001
        if isinstance(qos_profile, int):
            qos_profile = QoSProfile(depth=qos_profile)
        self.subscriptions[topic] = Subscription(msg_type, topic, callback, qos_profile, raw)
        return self.subscriptions[topic]

    def create_publisher(self, msg_type, topic: str, qos_profile, *, callback_group=None, event_callbacks=None,  # noqa: ANN001
                         qos_overriding_options=None, publisher_class=None) -> Publisher:  # noqa: ANN001
        if isinstance(qos_profile, int):
            qos_profile = QoSProfile(depth=qos_profile)
        self.publishers[topic] = Publisher(msg_type, topic, qos_profile)
        return self.publishers[topic]

    def destroy_node(self) -> None:
        self.destroyed = True


class Ros:
    """What the node did, and what ``spin`` does."""

    def __init__(self) -> None:
        self.initialized = False
        self.overrides: dict = {}
        self.nodes: list[Node] = []
        self.log: list[tuple[str, str]] = []
        self.on_spin: Callable[[Node], None] = lambda node: None
        self.spun = False

    # rclpy's module-level functions
    def init(self, *, args=None, context=None, domain_id=None, signal_handler_options=None) -> None:  # noqa: ANN001
        if self.initialized:
            raise RuntimeError("Context.init() must only be called once")
        self.initialized = True
        self.overrides = _parameter_overrides(list(args or []))

    def ok(self, *, context=None) -> bool:  # noqa: ANN001
        return self.initialized

    def spin(self, node: Node, executor=None) -> None:  # noqa: ANN001
        self.spun = True
        self.on_spin(node)
        raise KeyboardInterrupt  # what Ctrl-C does to a spinning node

    def shutdown(self, *, context=None, uninstall_handlers=None) -> None:  # noqa: ANN001
        if not self.initialized:
            raise RuntimeError("failed to shutdown: rcl_shutdown already called on the given context")
        self.initialized = False

    def try_shutdown(self, *, context=None) -> None:  # noqa: ANN001
        self.initialized = False


def _parameter_overrides(args: list[str]) -> dict:
    """``--ros-args -p name:=value ...`` -> {name: value}, values read as YAML (as rcl does)."""
    overrides, inside = {}, False
    for position, arg in enumerate(args):
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside and args[position - 1] in ("-p", "--param"):
            name, _, text = arg.partition(":=")
            overrides[name] = yaml.safe_load(text)
    return overrides


class _MessageType:
    """A message class token (the node only passes these to create_subscription/create_publisher)."""


_ROS = Ros()


def install(monkeypatch) -> Ros:  # noqa: ANN001
    """Make ``import rclpy`` (and the message packages) find the stand-in; a fresh :class:`Ros`."""
    global _ROS
    _ROS = Ros()
    modules = {
        "rclpy": dict(init=_ROS.init, ok=_ROS.ok, spin=_ROS.spin, shutdown=_ROS.shutdown, try_shutdown=_ROS.try_shutdown),
        "rclpy.node": dict(Node=Node),
        "rclpy.qos": dict(QoSProfile=QoSProfile, ReliabilityPolicy=ReliabilityPolicy, HistoryPolicy=HistoryPolicy),
        "rclpy.executors": dict(ExternalShutdownException=ExternalShutdownException),
        "sensor_msgs": {}, "vision_msgs": {},
        "sensor_msgs.msg": dict(Image=type("Image", (_MessageType,), {}),
                                CompressedImage=type("CompressedImage", (_MessageType,), {})),
        "vision_msgs.msg": dict(Detection2DArray=type("Detection2DArray", (_MessageType,), {})),
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(__import__("sys").modules, name, module)
    return _ROS
