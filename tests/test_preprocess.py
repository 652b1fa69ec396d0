"""Deployment preprocessing: NumPy and PyTorch agree, boxes map back exactly, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from retina_edge.errors import DataError, RetinaEdgeError
from retina_edge.preprocess import (
    PreprocessConfig,
    boxes_to_input,
    boxes_to_source,
    letterbox_geometry,
    preprocess_batch,
    preprocess_image,
)
from retina_edge.model.preprocess_torch import preprocess_tensor

SIZES = [(480, 640), (640, 480), (17, 23), (1000, 1501), (333, 777), (256, 256)]


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode,align", [("letterbox", "top-left"), ("letterbox", "center"), ("resize", "top-left")])
def test_numpy_and_torch_preprocessing_agree(size, mode, align):
    config = PreprocessConfig(256, 320, mode=mode, align=align)
    image = random_image(*size)
    array, info = preprocess_image(image, config)
    tensor, info_t = preprocess_tensor(image, config)
    assert info == info_t
    assert array.shape == (3, 256, 320) and array.dtype == np.float32
    # OpenCV and PyTorch compute sampling positions in different float precision; on large
    # downscales that moves values by up to 1/32 of one 8-bit grey level (1 level = 1/255/std).
    one_level = 1 / 255 / max(config.std)
    np.testing.assert_allclose(array, tensor.numpy(), atol=one_level / 32, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_letterbox_round_trip_within_half_pixel(size):
    config = PreprocessConfig(512, 512, align="center")
    info = letterbox_geometry(size, config)
    h, w = size
    rng = np.random.default_rng(1)
    x1, y1 = rng.uniform(0, w * 0.5, 50), rng.uniform(0, h * 0.5, 50)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, w * 0.5, 50), y1 + rng.uniform(1, h * 0.5, 50)], axis=1)
    back = boxes_to_source(boxes_to_input(boxes, info), info)
    assert np.abs(back - boxes).max() < 0.5


def test_letterbox_keeps_aspect_and_fits():
    info = letterbox_geometry((480, 640), PreprocessConfig(512, 512))
    assert info.resized_size == (384, 512) and (info.pad_x, info.pad_y) == (0, 0)
    centred = letterbox_geometry((480, 640), PreprocessConfig(512, 512, align="center"))
    assert (centred.pad_x, centred.pad_y) == (0, 64)


def test_padding_is_zero_after_normalisation():
    array, info = preprocess_image(random_image(100, 400), PreprocessConfig(256, 256))
    assert info.resized_size == (64, 256)
    assert np.all(array[:, 64:, :] == 0)


def test_boxes_outside_the_image_are_clipped_to_the_source():
    info = letterbox_geometry((100, 200), PreprocessConfig(256, 256))
    mapped = boxes_to_source(np.array([[-5.0, -5.0, 256.0, 256.0]]), info)
    assert mapped.tolist() == [[0.0, 0.0, 200.0, 100.0]]


@pytest.mark.parametrize("bad,match", [
    (np.zeros((10, 10), dtype=np.uint8), r"\(H, W, 3\)"),
    (np.zeros((10, 10, 4), dtype=np.uint8), r"\(H, W, 3\)"),
    (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
    ([[1, 2, 3]], "NumPy array"),
])
def test_wrong_image_type_or_shape(bad, match):
    with pytest.raises(DataError, match=match):
        preprocess_batch([bad], PreprocessConfig(64, 64))


@pytest.mark.parametrize("height,width", [(500, 512), (16, 64), (0, 64)])
def test_input_sizes_the_network_cannot_take(height, width):
    with pytest.raises(RetinaEdgeError, match="multiple of 32"):
        PreprocessConfig(height, width)


def test_preprocess_for_takes_the_models_normalisation_and_default_size():
    from retina_edge.model.archs import model_config
    from retina_edge.preprocess import preprocess_for

    config = model_config("resnet18_fpn", num_classes=3, min_size=200, max_size=200,
                          image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    default = preprocess_for(config)
    assert (default.height, default.width) == (224, 224)  # 200 rounded up to the C5 stride
    assert default.mean == (0.5, 0.5, 0.5) and default.std == (0.25, 0.25, 0.25)
    explicit = preprocess_for(config, (256, 320), mode="resize", align="center")
    assert (explicit.height, explicit.width, explicit.mode, explicit.align) == (256, 320, "resize", "center")
    assert explicit.mean == (0.5, 0.5, 0.5)
