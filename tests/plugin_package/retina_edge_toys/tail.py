"""Graph tail ``nms-agnostic``: the NMS tail with every class in one coordinate range, so overlapping
boxes of different classes suppress each other (one object, one box)."""

from retina_edge.export.graph_heads import NmsDetections


class AgnosticNms(NmsDetections):
    def __init__(self, model, input_size, tail) -> None:  # noqa: ANN001
        super().__init__(model, input_size, tail)
        self.class_offset = 0.0
