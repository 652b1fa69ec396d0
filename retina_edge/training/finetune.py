"""Fine-tuning a trained model (QAT, pruning): what it starts from and what it must fit.

A fine-tune starts from the checkpoint's own training options (``train`` stores them in it as
``train_config``): :func:`checkpoint_training_options` reads them, :func:`original_config` makes them
a :class:`~retina_edge.training.train.TrainConfig`, and each fine-tune changes what it scales or sets
(``dataclasses.replace``): QAT a tenth of the schedule at 1% of the learning rate, pruning its own
iterations at a third of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retina_edge.errors import RetinaEdgeError
from retina_edge.model.retinanet import RetinaNet
from retina_edge.training.train import TrainConfig

#: The original training's options a fine-tune takes over: how the model was optimised and fed, and
#: its schedule's length and peak learning rate (which each fine-tune scales). Not the architecture,
#: input size or frozen stages: the checkpoint's model fixes those itself.
RECIPE_KEYS = ("optimizer", "momentum", "weight_decay", "batch_size", "amp", "hflip", "train_min_sizes", "grad_clip",
               "workers", "seed", "lr", "iterations", "epochs")


def checkpoint_training_options(weights: str) -> dict[str, Any] | None:
    """The training options a retina-edge checkpoint (a path or ``preset:NAME``) was trained with;
    None for torchvision weights and checkpoints without them."""
    from retina_edge.model.checkpoints import read_checkpoint

    if weights.startswith("torchvision:"):
        return None
    if weights.startswith("preset:"):
        from retina_edge.presets import preset_checkpoint_path

        weights = str(preset_checkpoint_path(weights.split(":", 1)[1]))
    found = read_checkpoint(weights).get("train_config")
    return found if isinstance(found, dict) else None


def original_config(original: Mapping[str, Any] | None, data: str) -> TrainConfig:
    """The original training on ``data``: its :data:`RECIPE_KEYS` over TrainConfig's defaults (the
    defaults alone where ``original`` is None)."""
    values = {key: original[key] for key in RECIPE_KEYS if key in (original or {})}
    if "train_min_sizes" in values:
        values["train_min_sizes"] = tuple(values["train_min_sizes"])
    return TrainConfig(data=data, **values)


def original_iterations(base: TrainConfig, train_images: int) -> int:
    """The length of ``base``'s schedule in iterations (``epochs`` over ``train_images`` when it was
    given in epochs): what a fine-tune's fraction of the schedule is taken of."""
    return base.iterations or base.epochs * max(1, train_images // base.batch_size)


def check_classes(model: RetinaNet, data: str) -> None:
    """Refuse ``data`` (a COCO dataset; its train split is read) unless its classes are the model's:
    a fine-tune continues the model's own training."""
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split

    index = load_coco_index(*resolve_split(data, "train"))
    if tuple(index.class_names) != tuple(model.config.class_names):
        raise RetinaEdgeError(f"the model's classes {list(model.config.class_names)} are not the data's "
                              f"{list(index.class_names)}: fine-tuning is on the data the model was trained for")
