"""INT8 under an AP budget: keep the fewest, most sensitive layers in higher precision.

Like NNCF's ``quantize_with_accuracy_control``, but with COCO AP as the metric and both placements:

1. **Rank.** Each quantized conv of the network is probed alone: a graph where it is the only
   quantized layer (every other conv reads its float inputs), run on a few calibration images;
   its error is the head outputs' squared error against the FP32 graph, relative to their
   variance. A cheap proxy, computed once.
2. **Confirm with AP.** Starting from plain INT8, the most sensitive layers are kept high in
   growing numbers (1, 2, 4, ...) until the deployed AP on the validation set is within the
   budget, then the count is bisected down to the fewest that meet it. Each step only rewires the
   INT8 graph (:func:`keep_high_precision`), so no quantizer or calibration runs again.

**The decision rule** (:data:`DECISION_RULE`): a candidate meets the budget when the *upper*
bound of the 95% paired bootstrap interval of its AP drop against the FP32 graph, over the
validation images (:mod:`retina_edge.metrics.bootstrap`), is within the budget: the images must
show the loss is within it, not merely fail to show it is not. Before ranking anything, the
standard error of plain INT8's paired drop tells whether the validation set can resolve the budget
at all (the interval's half-width, 1.96 SE, must be below the budget, and the set must hold at
least :data:`~retina_edge.metrics.bootstrap.MIN_IMAGES` images, below which an interval is no
evidence); if not, the search stops and reports about how many images would (SE scales as
``1/sqrt(n)``) instead of a verdict.

"High" is FP32 for the CPU placement and an FP16 island (Casts around the conv, FP16 weights)
for the TensorRT placement, which TensorRT's strongly typed builder runs in FP16 as written.
AP is measured with ONNX Runtime on the CPU, like the rest of the precision work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.contract import NETWORK_SCOPES, DeploymentMetadata
from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.export.graph_weights import write_model
from retina_edge.metrics.bootstrap import MIN_IMAGES, Z95, MatchTable, images_needed, paired_bootstrap
from retina_edge.optional import require

logger = logging.getLogger(__name__)

DECISION_RULE = ("a candidate meets the budget when the upper bound of the 95% paired bootstrap interval of its COCO AP "
                 "drop against the FP32 graph (over the validation images, 1000 resamples) is within the budget; the "
                 "budget is unresolvable when 1.96 standard errors of plain INT8's drop exceed it, or on fewer than "
                 f"{MIN_IMAGES} validation images")
#: Resamples behind each step's interval (seeded, so a search is reproducible).
RESAMPLES = 1000


@dataclass(frozen=True)
class SearchOptions:
    """``max_ap_drop``: allowed COCO AP drop in points (0..100) against the FP32 graph on ``val``
    (a COCO dataset folder, whose val split is used, or an instances json); ``time_limit``:
    seconds after which the best model so far is kept; ``probe_images``: calibration images the
    sensitivity proxy runs on."""

    max_ap_drop: float
    val: str
    time_limit: float | None = None
    probe_images: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.max_ap_drop < 100:
            raise RetinaEdgeError(f"the AP budget max_ap_drop is in AP points (0 to 100), got {self.max_ap_drop}",
                                  option="max_ap_drop")
        if self.time_limit is not None and self.time_limit <= 0:
            raise RetinaEdgeError(f"the search time_limit must be above 0 seconds, got {self.time_limit}", option="time_limit")

    def within_budget(self, ap_reference: float, ap: float) -> bool:
        """Whether ``ap`` is at most ``max_ap_drop`` points below ``ap_reference``."""
        return ap_reference - ap <= self.max_ap_drop


@dataclass
class SearchResult:
    """What ``M.search.json`` holds; AP and drops in points (0..100) on the validation set, each
    interval a 95% paired bootstrap one. ``verdict``: "met", "not met", or "unresolved" (the
    validation set cannot resolve the budget: ``images_needed`` says about how many images would).
    ``sensitivity``: every quantized layer's proxy error, most sensitive first, with whether it
    is kept high."""

    max_ap_drop: float
    ap_reference: float
    ap_deployed: float
    layers_total: int
    layers_kept_high: list[str]
    high_precision: str
    budget_met: bool
    seconds: float = 0.0
    trajectory: list[dict] = field(default_factory=list)
    verdict: str = "not met"
    decision_rule: str = DECISION_RULE
    val_images: int = 0
    ap_drop: float = 0.0
    ap_drop_ci95: list[float] = field(default_factory=list)
    ap_reference_ci95: list[float] = field(default_factory=list)
    ap_deployed_ci95: list[float] = field(default_factory=list)
    #: Standard error of plain INT8's paired drop, and the images a budget this size needs (a model
    #: with no drop at all is shown within it at about this many images).
    int8_drop_se: float = 0.0
    images_needed: int | None = None
    sensitivity: list[dict] = field(default_factory=list)

    def write(self, path: str | os.PathLike) -> Path:
        write_text_atomic(path, json.dumps(asdict(self), indent=2))
        return Path(path)


class ValidationSet:
    """The annotated images AP is measured on, decoded once for every step of the search."""

    def __init__(self, spec: str) -> None:
        from retina_edge.data.coco_dataset import load_coco_index, resolve_split
        from retina_edge.imageio import read_image_rgb

        ann_file, image_dir = resolve_split(spec, "val")
        index = load_coco_index(ann_file, image_dir)
        index.require_boxes(option="val")
        self.ann_file = ann_file
        self.image_ids = [image.image_id for image in index.images]
        self.images = [read_image_rgb(image.path) for image in index.images]

    def matches(self, model: str | os.PathLike, metadata: DeploymentMetadata) -> MatchTable:
        """Per-image COCO matches of a graph on these images, through ONNX Runtime, from which
        AP and its intervals follow; ``metadata`` is the build's contract (a quantizer's output
        graph need not carry it yet)."""
        from retina_edge.metrics.evaluate import coco_evaluate, to_coco_results
        from retina_edge.runtime import Detector

        with Detector(model, backend="onnxruntime", metadata=metadata) as detector:
            category_ids = detector.metadata.model.category_ids or None
            results = [entry for image_id, detections in zip(self.image_ids, detector.detect(self.images))
                       for entry in to_coco_results(image_id, detections.as_tuple(), category_ids)]
        return coco_evaluate(self.ann_file, results, image_ids=self.image_ids).matches


@dataclass(frozen=True)
class Step:
    """One candidate's AP and its paired drop against FP32, with 95% intervals (points)."""

    ap: float
    ap_ci95: list[float]
    drop: float
    drop_ci95: list[float]
    drop_se: float

    @classmethod
    def measure(cls, reference: MatchTable, deployed: MatchTable, seed: int = 0) -> Step:
        found = paired_bootstrap(reference, deployed, resamples=RESAMPLES, seed=seed)
        delta = found.delta["AP"]
        return cls(found.deployed["AP"].point, found.deployed["AP"].pair(), -delta.point, [-delta.high, -delta.low], delta.se)

    def conservative_ap(self, ap_reference: float) -> float:
        """The reference's AP less the upper bound of the drop: what the decision rule compares."""
        return ap_reference - self.drop_ci95[1]


def quantized_layers(model) -> list[str]:  # noqa: ANN001 (onnx.ModelProto)
    """Names of the network's nodes that read a DequantizeLinear output: the layers INT8 runs
    (convs, and the residual adds and pooling a placement quantizes with them)."""
    produced_by_dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Shape")
            and n.name.startswith(NETWORK_SCOPES) and any(i in produced_by_dq for i in n.input)]


def keep_high_precision(qdq, fp32, layers: list[str], *, high: str):  # noqa: ANN001, ANN201 (onnx.ModelProto)
    """A copy of the Q/DQ graph ``qdq`` in which each node of ``layers`` reads float inputs: the
    activation before its QuantizeLinear, the FP32 graph's weight and bias (``fp32``); Q/DQ pairs
    nobody reads any more are dropped, so keeping every layer gives the FP32 graph. With
    ``high="fp16"`` a kept conv runs as an FP16 island (Cast in, FP16 weights, Cast out)."""
    onnx = require("onnx", "the INT8 accuracy search")
    from onnx import TensorProto, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    float_inits = {i.name: i for i in fp32.graph.initializer}
    have = {i.name for i in graph.initializer}
    wanted = set(layers)
    for node in [n for n in graph.node if n.name in wanted]:
        for slot, name in enumerate(node.input):
            node.input[slot] = _float_source(name, producer, float_inits, have, graph)
        if high == "fp16" and node.op_type == "Conv":
            _fp16_island(node, graph, numpy_helper, TensorProto)
    _release_shape_only_pairs(graph, producer)
    if high == "fp16" and wanted:
        _topological_sort(graph)
    _prune(graph)
    return model


def _release_shape_only_pairs(graph, producer: dict) -> None:  # noqa: ANN001
    """Point Shape nodes at the float tensor where a Q/DQ pair survives only for them (its other
    readers kept high): a shape is the same either way, and the pair can go. Pairs other layers
    still read are left alone, so keeping nothing changes nothing (ONNX Runtime fuses a
    DequantizeLinear with one reader differently from one with several)."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for name, users in readers.items():
        dq = producer.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear" and all(u.op_type == "Shape" for u in users):
            source = producer.get(dq.input[0])
            if source is not None and source.op_type == "QuantizeLinear":
                for user in users:
                    user.input[list(user.input).index(name)] = source.input[0]


def _float_source(name: str, producer: dict, float_inits: dict, have: set, graph) -> str:  # noqa: ANN001
    """The float tensor a DequantizeLinear output stands for (unchanged if ``name`` is not one)."""
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        return name
    source = dq.input[0]
    q = producer.get(source)
    if q is not None and q.op_type == "QuantizeLinear":
        source = q.input[0]  # an activation, or a float weight quantized in the graph (TensorRT placement)
    else:  # a weight stored quantized (CPU placement): its float original is the FP32 graph's
        stored, source = source, source.removesuffix("_quantized")
        if source not in float_inits:  # a shared bias quantized once per user: "bias0", "bias1", ...
            source = source.rstrip("0123456789")
        if source not in float_inits:
            return _dequantized(dq, stored, graph)
    if source in float_inits:
        # The CPU quantizer may name a DequantizeLinear output after the weight it replaced.
        alias = f"{source}_float" if source in producer else source
        if alias not in have:
            initializer = type(float_inits[source])()
            initializer.CopyFrom(float_inits[source])
            initializer.name = alias
            graph.initializer.append(initializer)
            have.add(alias)
        return alias
    return source


def _dequantized(dq, stored: str, graph) -> str:  # noqa: ANN001
    """A float initializer holding ``dq``'s value, for a weight whose float original is unknown."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values, scale = inits[stored].astype(np.float32), inits[dq.input[1]].astype(np.float32)
    zero = inits[dq.input[2]].astype(np.float32) if len(dq.input) > 2 and dq.input[2] else np.float32(0)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * values.ndim
    if scale.ndim and values.ndim:
        shape[axis] = -1
    name = f"{stored}_dequantized"
    if name not in inits:
        graph.initializer.append(numpy_helper.from_array((values - zero.reshape(shape)) * scale.reshape(shape), name))
    return name


def _fp16_island(node, graph, numpy_helper, TensorProto) -> None:  # noqa: ANN001, N803
    inits = {i.name: i for i in graph.initializer}
    for slot, name in enumerate(node.input):
        if name in inits:
            half = numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype(np.float16), f"{name}_fp16")
            if half.name not in inits:
                graph.initializer.append(half)
                inits[half.name] = half
            node.input[slot] = half.name
        else:
            cast = f"{node.name}_in{slot}_fp16"
            graph.node.append(_cast(name, cast, TensorProto.FLOAT16, f"{node.name}/CastIn{slot}"))
            node.input[slot] = cast
    output = node.output[0]
    node.output[0] = f"{output}_fp16"
    graph.node.append(_cast(node.output[0], output, TensorProto.FLOAT, f"{node.name}/CastOut"))


def _cast(source: str, target: str, to: int, name: str):  # noqa: ANN202
    from onnx import helper

    return helper.make_node("Cast", [source], [target], to=to, name=name)


def _topological_sort(graph) -> None:  # noqa: ANN001
    """Order nodes so each comes after the producers of its inputs (Kahn's algorithm)."""
    producer = {o: index for index, n in enumerate(graph.node) for o in n.output}
    waiting = [sum(1 for i in set(n.input) if i in producer) for n in graph.node]
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(graph.node):
        for source in {producer[i] for i in set(node.input) if i in producer}:
            consumers.setdefault(source, []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    order = []
    while ready:
        index = ready.pop()
        order.append(index)
        for consumer in consumers.get(index, ()):
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                ready.append(consumer)
    if len(order) != len(graph.node):
        raise RetinaEdgeError("the graph has a cycle after keeping layers in high precision")
    nodes = [graph.node[index] for index in order]
    del graph.node[:]
    graph.node.extend(nodes)


def _prune(graph) -> None:  # noqa: ANN001
    """Drop nodes whose outputs nobody reads any more (bypassed Q/DQ pairs) and unused initializers."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def layer_sensitivity(qdq, fp32, layers: list[str], probe: np.ndarray) -> dict[str, float]:  # noqa: ANN001
    """Each layer's error when it alone is quantized (the others read float inputs): relative
    squared error of the network's head outputs against the FP32 graph on the ``probe`` batch, the
    search's cheap ranking proxy. What it ranks is INT8 error, so the others are simply FP32."""
    from retina_edge.calib.statistics import network_output_names

    heads = network_output_names(fp32.graph)
    reference = _run_outputs(fp32, heads, probe)
    variance = {name: float(np.var(value)) or 1.0 for name, value in reference.items()}
    errors = {}
    for index, layer in enumerate(layers):
        alone = keep_high_precision(qdq, fp32, [other for other in layers if other != layer], high="fp32")
        outputs = _run_outputs(alone, heads, probe)
        errors[layer] = float(sum(np.mean((outputs[n] - reference[n]) ** 2) / variance[n] for n in heads))
        if (index + 1) % 10 == 0 or index + 1 == len(layers):
            logger.info("sensitivity of %d/%d layers probed", index + 1, len(layers))
    return errors


def _run_outputs(model, names: list[str], batch: np.ndarray) -> dict[str, np.ndarray]:  # noqa: ANN001
    """``names`` (intermediate tensors too) of ``model`` on ``batch``, one image at a time."""
    ort = require("onnxruntime", "the INT8 accuracy search")
    from retina_edge.contract import INPUT_NAME

    probe = type(model)()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(require("onnx", "the INT8 accuracy search").helper.make_empty_tensor_value_info(n) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(names, {INPUT_NAME: batch[i : i + 1]}) for i in range(len(batch))]
    return {name: np.concatenate([run[k] for run in runs]).astype(np.float64) for k, name in enumerate(names)}


def search(qdq_path: Path, fp32_path: Path, output: Path, *, options: SearchOptions, probe: np.ndarray, high: str,
           validation: ValidationSet, metadata: DeploymentMetadata) -> SearchResult:
    """Write to ``output`` the INT8 graph with the fewest layers kept high that meets the budget
    by :data:`DECISION_RULE` (or, if none does within the time limit, or the validation set cannot
    resolve the budget, the best found) and return what happened."""
    onnx = require("onnx", "the INT8 accuracy search")
    start = time.perf_counter()
    qdq, fp32 = onnx.load(str(qdq_path)), onnx.load(str(fp32_path))
    layers = quantized_layers(qdq)
    reference = validation.matches(fp32_path, metadata)
    result = SearchResult(options.max_ap_drop, 0.0, 0.0, len(layers), [], high, False, val_images=len(validation.images))
    ranked: list[str] = []  # filled by the ranking, which the search runs only when plain INT8 misses
    errors: dict[str, float] = {}
    steps: dict[int, Step] = {}
    with tempfile.TemporaryDirectory(prefix="retina-edge-search-") as scratch:
        def candidate(count: int) -> Path:
            return Path(scratch) / f"keep{count}.onnx"

        def evaluate(count: int) -> float:
            if count not in steps:
                write_model(keep_high_precision(qdq, fp32, ranked[:count], high=high), candidate(count))
                steps[count] = Step.measure(reference, validation.matches(candidate(count), metadata))
                _log_step(result, count, steps[count], options, start)
            return steps[count].conservative_ap(result.ap_reference)

        def rank() -> None:
            if not errors:
                errors.update(layer_sensitivity(qdq, fp32, layers, probe))
                ranked.extend(sorted(layers, key=lambda layer: -errors[layer]))

        result.ap_reference = _reference_ap(reference, len(validation.images))
        logger.info("search: FP32 AP %.2f on %d images; budget %.2f points; %d quantized layers",
                    result.ap_reference, len(validation.images), options.max_ap_drop, len(layers))
        evaluate(0)
        if _resolvable(result, steps[0], options):
            count, _ = _search_counts(evaluate, len(layers), result.ap_reference, options, start, rank=rank)
        else:
            count = 0
        if options.time_limit is None or time.perf_counter() - start < options.time_limit:
            rank()  # the sensitivity of every layer is part of the output, even when none is kept high
        shutil.copyfile(candidate(count), output)  # every count tried was saved; the chosen one is not rebuilt
    chosen = steps[count]
    result.ap_deployed, result.layers_kept_high = chosen.ap, ranked[:count]
    result.ap_drop, result.ap_drop_ci95, result.ap_deployed_ci95 = chosen.drop, chosen.drop_ci95, chosen.ap_ci95
    result.budget_met = result.verdict != "unresolved" and options.within_budget(result.ap_reference,
                                                                                 chosen.conservative_ap(result.ap_reference))
    result.verdict = "met" if result.budget_met else result.verdict
    result.sensitivity = [{"layer": layer, "score": errors[layer], "kept_high": layer in set(ranked[:count])}
                          for layer in ranked]
    result.seconds = time.perf_counter() - start
    return result


def _reference_ap(reference: MatchTable, images: int) -> float:
    from retina_edge.metrics.bootstrap import ap_of_weights

    return float(100 * ap_of_weights(reference, np.ones((1, images)))[0, 0])


def _resolvable(result: SearchResult, plain: Step, options: SearchOptions) -> bool:
    """Whether the validation set can show a drop within the budget, judged on plain INT8's SE;
    records the images a budget this size needs, and says so in one line when it cannot."""
    result.int8_drop_se = plain.drop_se
    result.images_needed = images_needed(plain.drop_se, result.val_images, options.max_ap_drop)
    if result.val_images < MIN_IMAGES:  # an interval over so few images is no evidence, however narrow
        result.verdict = "unresolved"
        logger.warning("search: %d validation images are too few for a bootstrap interval to be evidence (at least %d); "
                       "no verdict, plain INT8 kept", result.val_images, MIN_IMAGES)
        return False
    if options.within_budget(result.ap_reference, plain.conservative_ap(result.ap_reference)):
        return True  # plain INT8 is shown within it: resolved
    if Z95 * plain.drop_se < options.max_ap_drop:
        return True
    result.verdict = "unresolved"
    needed = "no number of images can" if result.images_needed is None else f"about {result.images_needed} would"
    logger.warning("search: %d validation images cannot resolve a budget of %.2f AP points (plain INT8's paired drop "
                   "%.2f, standard error %.2f, 95%% interval %.2f to %.2f); %s: no verdict, plain INT8 kept",
                   result.val_images, options.max_ap_drop, plain.drop, plain.drop_se, *plain.drop_ci95, needed)
    return False


def _log_step(result: SearchResult, count: int, step: Step, options: SearchOptions, start: float) -> None:
    elapsed = time.perf_counter() - start
    result.trajectory.append({"step": len(result.trajectory), "layers_kept_high": count, "ap": step.ap,
                              "ap_ci95": step.ap_ci95, "drop": step.drop, "drop_ci95": step.drop_ci95,
                              "drop_se": step.drop_se, "seconds": elapsed})
    # At most about 2 * log2(layers) + 2 steps: plain INT8, doubling, bisection.
    remaining = max(0, 2 * math.ceil(math.log2(max(2, result.layers_total))) + 2 - len(result.trajectory))
    logger.info("search step %d: %d of %d layers kept high, AP %.2f, drop %.2f (95%% interval %.2f to %.2f; budget "
                "%.2f on the upper bound), elapsed %.0f s, ETA at most %.0f s", len(result.trajectory) - 1, count,
                result.layers_total, step.ap, step.drop, *step.drop_ci95, options.max_ap_drop, elapsed,
                remaining * elapsed / len(result.trajectory))


def _search_counts(evaluate: Callable[[int], float], total: int, ap_reference: float, options: SearchOptions,
                   start: float, *, rank: Callable[[], None]) -> tuple[int, float]:
    """(layers kept high, AP) of the smallest count meeting the budget: plain INT8 first, then
    1, 2, 4, ... most sensitive layers, then bisection. Stops at the time limit with the best so far."""
    def met(ap: float) -> bool:
        return options.within_budget(ap_reference, ap)

    def out_of_time() -> bool:
        return options.time_limit is not None and time.perf_counter() - start > options.time_limit

    tried = {0: evaluate(0)}
    if met(tried[0]):
        return 0, tried[0]
    if not out_of_time():
        rank()
    low, high = 0, None
    count = 1
    while high is None and not out_of_time():
        tried[count] = evaluate(count)
        if met(tried[count]):
            high = count
        elif count == total:
            break
        else:
            low, count = count, min(total, count * 2)
    while high is not None and high - low > 1 and not out_of_time():
        middle = (low + high) // 2
        tried[middle] = evaluate(middle)
        low, high = (low, middle) if met(tried[middle]) else (middle, high)
    if high is not None:
        return high, tried[high]
    if out_of_time():
        logger.warning("search: time limit of %.0f s reached", options.time_limit)
    best = max(tried, key=lambda k: (tried[k], -k))
    return best, tried[best]
