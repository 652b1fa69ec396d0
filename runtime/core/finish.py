"""``Finisher``: what the host does after a graph of a given contract, from outputs to detections.

It decodes anchors (``none`` graphs), runs class-aware NMS (``none``/``decode`` graphs), applies
the score threshold on every tail and maps boxes to each source image's pixels. ``Detector`` uses
it after inference; the Triton ensemble's post-processing model uses it alone.
"""

from __future__ import annotations

import numpy as np

from retina_edge.anchors import feature_shapes_for, grid_anchors
from retina_edge.contract import DeploymentMetadata
from retina_edge.preprocess import LetterboxInfo, boxes_to_source
from retina_edge.runtime.core.postprocess import candidates_from_raw, select_detections
from retina_edge.runtime.core.results import Detections


class Finisher:
    """Outputs of a graph deployed under ``metadata`` -> one :class:`Detections` per image."""

    def __init__(self, metadata: DeploymentMetadata) -> None:
        self.metadata = metadata
        self._level_anchors = None
        if metadata.tail.mode == "none":
            size = metadata.input_size
            self._level_anchors = grid_anchors(feature_shapes_for(size), size, metadata.model.anchors)

    def __call__(self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        """``outputs``: the graph's outputs by name, batch first; ``infos``: where each image landed."""
        model = self.metadata.model
        detections = []
        for index, info in enumerate(infos):
            boxes, scores, labels = self._one(outputs, index)
            detections.append(Detections(boxes_to_source(boxes, info), scores.astype(np.float32), labels.astype(np.int64),
                                         model.class_names, model.category_ids))
        return detections

    def _one(self, outputs: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        config, tail = self.metadata.model.postprocess, self.metadata.tail
        if tail.mode in ("nms", "deepstream"):
            count = int(outputs["num_detections"][index].reshape(-1)[0])
            scores = outputs["det_scores"][index][:count]
            # the graph applied its baked threshold; a higher one asked of the host applies here
            keep = scores > self.metadata.score_thresh if config.score_thresh > (tail.score_thresh or 0.0) else slice(None)
            return outputs["det_boxes"][index][:count][keep], scores[keep], outputs["det_labels"][index][:count][keep]
        if tail.mode == "none":
            candidates = candidates_from_raw(
                outputs["cls_logits"][index], outputs["bbox_regression"][index], self._level_anchors,
                config=config, box_coder=self.metadata.model.box_coder, input_size=self.metadata.input_size,
            )
        else:
            candidates = (outputs["boxes"][index], outputs["scores"][index], outputs["labels"][index])
        return select_detections(*candidates, config)
