"""Fine-tuning a trained model (QAT, pruning): what it starts from and what it must fit."""

from __future__ import annotations

from retina_edge.errors import RetinaEdgeError
from retina_edge.model.retinanet import RetinaNet


def check_classes(model: RetinaNet, data: str) -> None:
    """Refuse ``data`` (a COCO dataset; its train split is read) unless its classes are the model's:
    a fine-tune continues the model's own training."""
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split

    index = load_coco_index(*resolve_split(data, "train"))
    if tuple(index.class_names) != tuple(model.config.class_names):
        raise RetinaEdgeError(f"the model's classes {list(model.config.class_names)} are not the data's "
                              f"{list(index.class_names)}: fine-tuning is on the data the model was trained for")
