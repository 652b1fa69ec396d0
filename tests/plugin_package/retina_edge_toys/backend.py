"""Backend ``numpy-ref``: the graph run by ONNX's reference evaluator (plain NumPy, single-threaded)."""

import numpy as np

from retina_edge.contract import INPUT_NAME


class ReferenceBackend:
    name = "numpy-ref"
    input_name = INPUT_NAME

    def __init__(self, path) -> None:  # noqa: ANN001
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(str(path))
        self.output_names = tuple(self.evaluator.output_names)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.evaluator.run(None, {self.input_name: batch})))

    def close(self) -> None:
        self.evaluator = None


def open_backend(path, options, engine) -> ReferenceBackend:  # noqa: ANN001
    return ReferenceBackend(path)
