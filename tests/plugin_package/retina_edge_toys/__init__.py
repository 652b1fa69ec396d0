"""Toy plugins for retina-edge, registered through its ``retina_edge.plugins`` entry point.

- architecture ``toymobile_fpn``: a MobileNet-style backbone (depthwise-separable stages) under the FPN and head;
- precision ``fp16w``: FP16 weight storage, FP32 arithmetic (a Cast after each weight);
- backend ``numpy-ref``: the ONNX reference evaluator (NumPy);
- graph tail ``nms-agnostic``: final detections from class-agnostic NMS;
- tracker ``greedy-iou``: each detection takes the ID of the last frame's box it overlaps most.
"""


def register() -> None:
    from retina_edge.calib.recipes import FP16_VERIFY, Recipe, register_recipe
    from retina_edge.contract import TailSpec, register_tail
    from retina_edge.model.archs import Arch, register_arch
    from retina_edge.model.registry import BACKBONES
    from retina_edge.runtime.backends import register_backend
    from retina_edge.runtime.video.tracking import TrackerSpec, register_tracker

    from retina_edge_toys import backend, precision, tracker

    BACKBONES.register("toymobile", _build_toymobile)
    register_arch(Arch("toymobile_fpn", depth=0, variant="v1", backbone="toymobile",
                       description="MobileNet-style depthwise-separable backbone (retina-edge-toys)"))
    register_recipe(Recipe("fp16w", "cpu", precision.fp16_weights, verify=FP16_VERIFY,
                           description="FP16 weights, FP32 arithmetic (retina-edge-toys)"))
    register_backend("numpy-ref", factory=backend.open_backend, module="onnx", devices=("cpu",),
                     description="the ONNX reference evaluator (retina-edge-toys)")
    register_tail(TailSpec("nms-agnostic", "detections", "retina_edge_toys.tail:AgnosticNms",
                           description="class-agnostic NMS: final detections (retina-edge-toys)"))
    register_tracker(TrackerSpec("greedy-iou", tracker.GreedyIou, description="greedy IoU matching (retina-edge-toys)"))


def _build_toymobile(config, norm):  # noqa: ANN001, ANN202 - torch is imported only when a model is built
    from retina_edge_toys.mobile import MobileBody

    return MobileBody(width=config.backbone_width, norm=norm)
