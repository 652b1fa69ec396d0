"""``Finisher``: what the host does after a graph of a given contract, from outputs to detections.

What it does follows the tail's form (:data:`retina_edge.contract.FORMS`): it decodes anchors
(``raw``), runs class-aware NMS (``raw``, ``candidates``), reads the first ``num_detections`` rows
(``detections``), applies the score threshold on every form and maps boxes to each source image's
pixels (a frame graph's are in them already), so a plugin's tail of a known form needs nothing
here. ``Detector`` uses it after inference; the Triton ensemble's post-processing model uses it
alone.
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
        self._form = metadata.tail.spec.form
        self._names = metadata.tail.output_names
        self._level_anchors = None
        if self._form == "raw":
            size = metadata.input_size
            self._level_anchors = grid_anchors(feature_shapes_for(size), size, metadata.model.anchors)

    def __call__(self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo]) -> list[Detections]:
        """``outputs``: the graph's outputs by name, batch first; ``infos``: where each image landed."""
        model = self.metadata.model
        in_frame = self.metadata.frame is not None
        detections = []
        for index, info in enumerate(infos):
            boxes, scores, labels = self._one(outputs, index)
            boxes = boxes.astype(np.float32) if in_frame else boxes_to_source(boxes, info)
            detections.append(Detections(boxes, scores.astype(np.float32), labels.astype(np.int64),
                                         model.class_names, model.category_ids))
        return detections

    def _one(self, outputs: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        config, tail = self.metadata.model.postprocess, self.metadata.tail
        mine = [outputs[name][index] for name in self._names]
        if self._form == "detections":
            count = int(mine[0].reshape(-1)[0])
            boxes, scores, labels = (value[:count] for value in mine[1:])
            # the graph applied its baked threshold; a higher one asked of the host applies here
            keep = scores > self.metadata.score_thresh if config.score_thresh > (tail.score_thresh or 0.0) else slice(None)
            return boxes[keep], scores[keep], labels[keep]
        if self._form == "raw":
            mine = candidates_from_raw(*mine, self._level_anchors, config=config,
                                       box_coder=self.metadata.model.box_coder, input_size=self.metadata.input_size)
        return select_detections(*mine, config)
