"""Fake quantization on the PyTorch model, exactly where and as the recipe's INT8 graph quantizes.

:func:`attach_fake_quant` takes the sites read from the PTQ graph
(:func:`~retina_edge.calib.qat_sites.read_quant_sites`) and makes the model compute what that
graph computes: each quantized activation is fake-quantized where it is produced, with the graph's
scale and zero point (fixed, as ModelOpt keeps ``amax`` during QAT, and as NVIDIA's QAT guidance
advises: no change of scale while training), and each quantized convolution's weight per output
channel with ``scale = max |W[c]| / 127`` of the current weights, the scale both placements
compute from the weights at export (TensorFlow's QAT default, ``LastValueQuantizer``, does the
same). Nothing is added to the model's parameters or state dict: the fine-tuned model saves, loads
and exports as a plain RetinaNet.

Where: the exporter names every node after the module call it comes from (``/backbone/body/layer1/
layer1.0/Add``: the add inside that block's call; ``.../conv.0.0_2/Conv``: that conv's third call);
each site's producing node is resolved to that call, and a leaf module's output or a functional
op's output (``Add``, ``Resize``, ``Relu`` inside a block or the FPN) is fake-quantized there, by
forward hooks and a ``TorchFunctionMode``. A convolution followed by a BatchNorm is one ``Conv``
node in the graph (the exporter folds the norm in): its output site is the norm's output, and its
per-channel weight codes survive the fold (scale ``s[c] * |g[c]|`` for the folded weight
``W[c] * g[c]``; :func:`snap_weights` makes the exported weights the fake-quantized ones so the
codes are equal, not only close). One dry forward resolves every site and refuses the model if
any is missing or found twice.

The fake-quant arithmetic comes from a backend: ModelOpt's ``TensorQuantizer`` (symmetric int8:
TensorRT's placement) or PyTorch's own ``fake_quantize_per_*_affine`` (any zero point: ONNX
Runtime's uint8 activations for CPUs, which ModelOpt's symmetric quantizer cannot express).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from retina_edge.calib.qat_sites import WEIGHT_RANGE, ActivationQuant, NodeScope, QuantSites, split_call_suffix
from retina_edge.contract import INPUT_NAME
from retina_edge.errors import RetinaEdgeError
from retina_edge.model.backbone import FrozenBatchNorm2d
from retina_edge.optional import require

#: Modules the exporter folds into the convolution before them (one Conv node in the graph).
FOLDED_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _onnx_op(func) -> str | None:  # noqa: ANN001
    """The ONNX op type a torch function call becomes (for the ops sites and weights can sit on)."""
    if func in (torch.Tensor.__add__, torch.Tensor.__radd__, torch.Tensor.__iadd__, torch.add, torch.Tensor.add):
        return "Add"
    if func is F.interpolate:
        return "Resize"
    if func in (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_):
        return "Relu"
    if func is F.conv2d:
        return "Conv"
    return None


# ---------------------------------------------------------------- fake-quant backends

@dataclass(frozen=True)
class FakeQuantBackend:
    """Makes fake-quant modules: ``activation(site)`` for one tensor, ``weight()`` per output
    channel from the current weights."""

    name: str
    activation: Callable[[ActivationQuant], nn.Module]
    weight: Callable[[], nn.Module]
    description: str


class _TorchActivation(nn.Module):
    def __init__(self, site: ActivationQuant) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(site.scale, dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor(site.zero_point, dtype=torch.int32))
        self.qmin, self.qmax = site.qmin, site.qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.qmin, self.qmax)


class _TorchWeight(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12) / WEIGHT_RANGE[1]
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, *WEIGHT_RANGE)


def _modelopt_activation(site: ActivationQuant) -> nn.Module:
    from modelopt.torch.quantization.config import QuantizerAttributeConfig
    from modelopt.torch.quantization.nn import TensorQuantizer

    if site.zero_point != 0:
        raise RetinaEdgeError("ModelOpt's INT8 fake quantization is symmetric (no zero point); this placement "
                              f"quantizes with zero point {site.zero_point}: use the torch fake-quant backend")
    unsigned = site.qmin == 0
    amax = site.scale * (site.qmax if unsigned else -site.qmin - 1)  # ModelOpt: scale = amax / 127 (or / 255)
    return TensorQuantizer(QuantizerAttributeConfig(num_bits=8, unsigned=unsigned), amax=torch.tensor(amax))


def _modelopt_weight() -> nn.Module:
    from modelopt.torch.quantization.config import QuantizerAttributeConfig
    from modelopt.torch.quantization.nn import TensorQuantizer

    # No amax: ModelOpt then takes max |W[c]| of the weights it is given, at every call.
    return TensorQuantizer(QuantizerAttributeConfig(num_bits=8, axis=0, narrow_range=True))


FAKE_QUANT_BACKENDS = {
    "modelopt": FakeQuantBackend("modelopt", _modelopt_activation, _modelopt_weight,
                                 "NVIDIA Model Optimizer's TensorQuantizer (symmetric int8)"),
    "torch": FakeQuantBackend("torch", _TorchActivation, _TorchWeight,
                              "PyTorch's fake_quantize_per_tensor/per_channel_affine (any zero point)"),
}


def fake_quant_backend(name: str) -> FakeQuantBackend:
    if name not in FAKE_QUANT_BACKENDS:
        raise RetinaEdgeError(f"unknown fake-quant backend {name!r}; expected one of {tuple(FAKE_QUANT_BACKENDS)}")
    if name == "modelopt":
        require("modelopt.torch.quantization", "quantization-aware training for TensorRT")
    return FAKE_QUANT_BACKENDS[name]


# ---------------------------------------------------------------- where, in the model

@dataclass(frozen=True)
class TorchSite:
    """A tensor in one forward pass: the output of call ``call`` of module ``module`` (``op`` None:
    a leaf module), or of the ``index``-th ``op`` run directly in that call."""

    module: str
    call: int
    op: str | None = None
    index: int = 0


def node_site(model: nn.Module, node_name: str) -> tuple[TorchSite, nn.Module]:
    """Where the exported node ``node_name`` runs in ``model`` (a RetinaNet), and its innermost module."""
    scope = NodeScope.parse(node_name)
    anchor_name, anchor = "", model
    qualified, module, call = "", model, 0
    for component in scope.components:
        name, call = _child(anchor, component, node_name)
        qualified = f"{anchor_name}.{name}" if anchor_name else name
        module = anchor.get_submodule(name)
        if not isinstance(module, _CONTAINERS):  # the exporter names modules relative to the nearest non-container
            anchor_name, anchor = qualified, module
    leaf = not any(True for _ in module.children())
    return (TorchSite(qualified, call) if leaf else TorchSite(qualified, call, scope.op, scope.op_index)), module


def _child(anchor: nn.Module, component: str, node_name: str) -> tuple[str, int]:
    for name, call in ((component, 0), split_call_suffix(component)):
        try:
            anchor.get_submodule(name)
            return name, call
        except AttributeError:
            continue
    raise RetinaEdgeError(f"the graph's node {node_name} names no module of the model ({component!r}): the graph "
                          "was exported from another architecture")


@dataclass
class _Pass:
    """One forward pass's bookkeeping: the module-call stack, calls per module, ops per call."""

    stack: list[tuple[str, int, bool]] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)
    busy: bool = False
    record: list | None = None  # discovery: (site, module, input, output) of every call and op


class _Sites(TorchFunctionMode):
    """Fake-quantizes functional-op outputs and conv weights while a pass runs (see the module docstring)."""

    def __init__(self, fake: FakeQuant) -> None:
        super().__init__()
        self.fake = fake

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        state, op = self.fake.state, _onnx_op(func)
        if op is None or state.busy or not state.stack:
            return func(*args, **kwargs)
        name, call, leaf = state.stack[-1]
        if leaf:
            quantizer = self.fake.weight_quantizer(name) if op == "Conv" else None
            if quantizer is not None:
                args = (args[0], self.fake.run(quantizer, args[1]), *args[2:])
            return func(*args, **kwargs)
        site = TorchSite(name, call, op, state.ops[name, call, op])
        state.ops[name, call, op] += 1
        output = func(*args, **kwargs)
        if state.record is not None:
            state.record.append((site, None, None, output))
        return self.fake.quantize(site, output)


class FakeQuant:
    """Fake quantization attached to a RetinaNet (hooks and a wrapped ``head_outputs``); ``modules``
    holds the quantizers (kept out of the model, so its state dict stays a plain RetinaNet's; they
    move to each batch's device, as the model does with ``train``); :meth:`remove` restores the plain model."""

    def __init__(self, model: nn.Module, sites: QuantSites, backend: FakeQuantBackend) -> None:
        self.model, self.sites, self.backend = model, sites, backend
        self.state = _Pass()
        self.activation_keys: dict[TorchSite | str, str] = {}
        self.weight_modules: dict[str, str] = {}
        self.modules = nn.ModuleDict({"activations": nn.ModuleDict(), "weights": nn.ModuleDict()})
        self.device = torch.device("cpu")  # where ``modules`` are: made on the CPU
        self._handles = []
        leaves = {name for name, module in model.named_modules() if not any(True for _ in module.children())}
        for name, module in model.named_modules():
            if module is not model:
                self._handles.append(module.register_forward_pre_hook(functools.partial(self._enter, name, name in leaves)))
                self._handles.append(module.register_forward_hook(functools.partial(self._leave, name)))
        self._original = model.head_outputs
        model.head_outputs = self._head_outputs

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        del self.model.head_outputs  # the instance attribute; the class's method shows again

    def _head_outputs(self, batch: torch.Tensor):  # noqa: ANN202
        if batch.device != self.device:  # model.to(...) moves the model, not these (no part of it): they follow the batch
            self.modules.to(batch.device)
            self.device = batch.device
        self.state.stack.clear()
        self.state.calls.clear()
        self.state.ops.clear()
        batch = self.quantize(INPUT_NAME, batch)
        with _Sites(self):
            return self._original(batch)

    def _enter(self, name: str, leaf: bool, _module, args) -> None:  # noqa: ANN001
        state = self.state
        state.stack.append((name, state.calls[name], leaf))
        state.calls[name] += 1
        if state.record is not None and leaf:
            state.record.append((TorchSite(name, state.calls[name] - 1), _module, args[0] if args else None, None))

    def _leave(self, name: str, _module, _args, output):  # noqa: ANN001, ANN202
        _, call, leaf = self.state.stack.pop()
        if not leaf:
            return None
        if self.state.record is not None:
            self.state.record.append((TorchSite(name, call), _module, None, output))
        return self.quantize(TorchSite(name, call), output)

    def quantize(self, site: TorchSite | str, tensor: torch.Tensor) -> torch.Tensor:
        key = self.activation_keys.get(site)
        return tensor if key is None else self.run(self.modules["activations"][key], tensor)

    def weight_quantizer(self, module_name: str) -> nn.Module | None:
        key = self.weight_modules.get(module_name)
        return None if key is None else self.modules["weights"][key]

    def run(self, quantizer: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
        """``quantizer(tensor)`` with the site mode and hooks out of the way."""
        self.state.busy = True
        try:
            return quantizer(tensor)
        finally:
            self.state.busy = False


def attach_fake_quant(model: nn.Module, sites: QuantSites, backend: str, example: torch.Tensor) -> FakeQuant:
    """Attach fake quantization at ``sites`` to ``model``; ``example``: a ``(1, 3, H, W)`` batch of the
    graph's input size, run once (no gradient) to find every site. Raises if any is missing."""
    fake = FakeQuant(model, sites, fake_quant_backend(backend))
    try:
        _resolve(fake, example)
    except BaseException:
        fake.remove()
        raise
    return fake


def _resolve(fake: FakeQuant, example: torch.Tensor) -> None:
    """Map every site to its place in one discovery pass, then make the quantizers."""
    model, sites = fake.model, fake.sites
    fake.state.record = record = []
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()
            fake._head_outputs(example)
    finally:
        fake.state.record = None
        model.train(was_training)
    seen = {site for site, _module, _input, output in record if output is not None}
    folds = _folds(record)
    places: dict[TorchSite | str, str] = {}
    for tensor, activation in sites.activations.items():
        place = INPUT_NAME if not activation.producer else _place(model, activation.producer, folds, seen)
        if place in places:
            raise RetinaEdgeError(f"tensors {places[place]} and {tensor} are produced at the same place in the model")
        places[place] = tensor
    for index, (place, tensor) in enumerate(places.items()):
        fake.activation_keys[place] = f"a{index}"
        fake.modules["activations"][f"a{index}"] = fake.backend.activation(sites.activations[tensor])
    convs = {folded: conv for conv, folded in folds.items()}
    for index, conv in enumerate(sorted({_conv_of(model, node, convs) for node in sites.weights})):
        fake.weight_modules[conv] = f"w{index}"
        fake.modules["weights"][f"w{index}"] = fake.backend.weight()


def _place(model: nn.Module, producer: str, folds: dict[TorchSite, TorchSite], seen: set) -> TorchSite:
    site, module = node_site(model, producer)
    if site not in seen:
        raise RetinaEdgeError(f"the graph's node {producer} has no counterpart in a forward pass of the model "
                              f"(looked for {site})")
    return folds.get(site, site) if isinstance(module, nn.Conv2d) else site


def _conv_of(model: nn.Module, node: str, convs: dict[TorchSite, TorchSite]) -> str:
    """The convolution module behind a Conv node, also one the simplifier named after the norm folded into it."""
    site, module = node_site(model, node)
    if isinstance(module, FOLDED_NORMS) and site in convs:
        return convs[site].module
    if not isinstance(module, nn.Conv2d):
        raise RetinaEdgeError(f"the graph's conv node {node} is no convolution of the model ({site.module})")
    return site.module


def _folds(record: list) -> dict[TorchSite, TorchSite]:
    """Conv output -> the output of the norm that reads it (one node in the exported graph)."""
    produced_by = {id(output): site for site, module, _input, output in record
                   if output is not None and isinstance(module, nn.Conv2d)}
    return {produced_by[id(tensor)]: site for site, module, tensor, _output in record
            if isinstance(module, FOLDED_NORMS) and tensor is not None and id(tensor) in produced_by}


def snap_weights(model: nn.Module, fake: FakeQuant) -> None:
    """Replace each quantized convolution's weight by its fake-quantized value (in place), so the
    exported graph's INT8 weight codes are the ones the model trained with, through any BN fold."""
    with torch.no_grad():
        for name in fake.weight_modules:
            conv = model.get_submodule(name)
            conv.weight.copy_(fake.run(fake.weight_quantizer(name), conv.weight))
