"""The PyTorch reference as a plain detector: uint8 RGB images in, NumPy detections out."""

from __future__ import annotations

import numpy as np
import torch

from retina_edge.data.detection_data import image_to_tensor
from retina_edge.metrics.evaluate import DetectFn, Detections
from retina_edge.model.retinanet import RetinaNet


def reference_detector(model: RetinaNet, *, device: str | torch.device = "cpu") -> DetectFn:
    """Wrap an eval-mode model as ``detect(list of (H, W, 3) uint8 RGB) -> [(boxes, scores, labels)]``.

    Boxes are x1y1x2y2 in each source image's pixels.
    """
    model = model.eval().to(device)

    @torch.no_grad()
    def detect(images: list[np.ndarray]) -> list[Detections]:
        outputs = model([image_to_tensor(image).to(device) for image in images])
        return [(o["boxes"].cpu().numpy(), o["scores"].cpu().numpy(), o["labels"].cpu().numpy()) for o in outputs]

    return detect


@torch.no_grad()
def reference_on_inputs(
    model: RetinaNet, batch: torch.Tensor, *,
    head_outputs: tuple[dict[str, torch.Tensor], list[tuple[int, int]]] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Reference detections for an already preprocessed ``(B, 3, H, W)`` batch (e.g. letterboxed).

    Boxes are x1y1x2y2 in input pixels, clipped to the whole input: the network sees padding as
    part of the image, exactly as a deployed graph at this input size does. ``head_outputs``:
    ``model.head_outputs(batch)`` when the caller already has it (the network is not run again).
    """
    outputs, feature_shapes = head_outputs if head_outputs is not None else model.head_outputs(batch)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    anchors = [a.to(batch.device) for a in model.anchors(size, feature_shapes)]
    return model.postprocess(outputs, anchors, [size] * batch.shape[0])
