"""Deployment preprocessing, defined once: letterbox (or plain resize) to the model's fixed input,
RGB uint8 -> normalised float32 CHW, and the exact inverse mapping of boxes (NumPy, no torch); or,
for a frame graph (:class:`FrameInput`: the graph letterboxes and normalises camera frames itself),
the uint8 batch of frames it takes as they are.

Export, calibration, the runtime and ``verify`` all call these functions; the PyTorch twin in
:mod:`retina_edge.model.preprocess_torch` is tested to give the same numbers.

Letterbox keeps the aspect ratio: scale ``s = min(H / h, W / w)``, resized size
``(round(h * s), round(w * s))``, placed top-left (default, like the training transform, whose
padding is bottom/right) or centred. Padding is 0 after normalisation, i.e. the mean colour, again
as in training. Resampling is bilinear with half-pixel centres and no antialiasing (OpenCV's
``INTER_LINEAR`` on float32, which equals PyTorch's ``interpolate(mode="bilinear")``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retina_edge.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from retina_edge.errors import DataError, RetinaEdgeError

MODES = ("letterbox", "resize")
ALIGNS = ("top-left", "center")
#: Channel orders a frame graph takes: BGR as OpenCV and most camera drivers give frames, or RGB.
CHANNEL_ORDERS = ("bgr", "rgb")
#: Largest frame side a frame graph is made for (8K video is 7680 x 4320).
MAX_FRAME_SIDE = 8192
#: Input sides must be multiples of this: the stride of C5, the deepest level FPN merges top-down.
SIZE_DIVISOR = 32


@dataclass(frozen=True)
class PreprocessConfig:
    """Fixed network input (pixels), resize mode, placement and RGB mean/std (of [0, 1] values)."""

    height: int
    width: int
    mode: str = "letterbox"
    align: str = "top-left"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RetinaEdgeError(f"unknown resize mode {self.mode!r}; expected one of {MODES}")
        if self.align not in ALIGNS:
            raise RetinaEdgeError(f"unknown letterbox alignment {self.align!r}; expected one of {ALIGNS}")
        for side in (self.height, self.width):
            if side < SIZE_DIVISOR or side % SIZE_DIVISOR:
                raise RetinaEdgeError(
                    f"input size {self.height}x{self.width} is not usable: each side must be a positive "
                    f"multiple of {SIZE_DIVISOR} (the network's C5 stride), e.g. 512x512 or 384x640"
                )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def preprocess_for(model_config: ModelConfig, input_size: tuple[int, int] | None = None, *, mode: str = "letterbox",
                   align: str = "top-left") -> PreprocessConfig:
    """Deployment preprocessing of a model: its own mean/std, at ``input_size`` (H, W) or, by
    default, its square ``max_size`` rounded up to a multiple of :data:`SIZE_DIVISOR`."""
    transform = model_config.transform
    if input_size is None:
        side = -(-transform.max_size // SIZE_DIVISOR) * SIZE_DIVISOR
        input_size = (side, side)
    return PreprocessConfig(*input_size, mode=mode, align=align, mean=transform.image_mean, std=transform.image_std)


@dataclass(frozen=True)
class LetterboxInfo:
    """Where one source image landed in the network input.

    ``scale_x``/``scale_y``: input pixels per source pixel; ``pad_x``/``pad_y``: offset (pixels) of
    the resized image in the input; ``source_size``/``resized_size``: (H, W).
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    source_size: tuple[int, int]
    resized_size: tuple[int, int]


def letterbox_geometry(source_size: tuple[int, int], config: PreprocessConfig) -> LetterboxInfo:
    """Placement of a source image of (H, W) ``source_size`` in the input of ``config``."""
    height, width = source_size
    if height < 1 or width < 1:
        raise DataError(f"image of size {height}x{width} is empty")
    if config.mode == "resize":
        new_h, new_w = config.height, config.width
    else:
        scale = min(config.height / height, config.width / width)
        new_h = min(config.height, max(1, int(round(height * scale))))
        new_w = min(config.width, max(1, int(round(width * scale))))
    pad_x = pad_y = 0
    if config.align == "center":
        pad_x, pad_y = (config.width - new_w) // 2, (config.height - new_h) // 2
    return LetterboxInfo(new_w / width, new_h / height, pad_x, pad_y, (height, width), (new_h, new_w))


def check_image(image: np.ndarray, index: int = 0) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 RGB image; a clear error for anything else."""
    if not isinstance(image, np.ndarray):
        raise DataError(f"image {index}: expected a NumPy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"image {index}: expected shape (H, W, 3) RGB, got {image.shape}")
    if image.dtype != np.uint8:
        raise DataError(f"image {index}: expected dtype uint8 (0..255), got {image.dtype}")
    return image


def preprocess_image(image: np.ndarray, config: PreprocessConfig, *, index: int = 0) -> tuple[np.ndarray, LetterboxInfo]:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H_in, W_in)`` float32 normalised input and its placement.

    ``index`` names the image in error messages (its position in a batch).
    """
    import cv2

    check_image(image, index)
    info = letterbox_geometry(image.shape[:2], config)
    new_h, new_w = info.resized_size
    scaled = image.astype(np.float32) * np.float32(1.0 / 255.0)
    if (new_h, new_w) != image.shape[:2]:
        scaled = cv2.resize(scaled, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    out = np.zeros((3, config.height, config.width), dtype=np.float32)
    out[:, info.pad_y : info.pad_y + new_h, info.pad_x : info.pad_x + new_w] = ((scaled - mean) / std).transpose(2, 0, 1)
    return out, info


def preprocess_batch(images: Sequence[np.ndarray], config: PreprocessConfig) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Stack of :func:`preprocess_image`: ``(B, 3, H_in, W_in)`` float32 and one info per image."""
    if len(images) == 0:
        raise DataError("no images to preprocess")
    arrays, infos = [], []
    for index, image in enumerate(images):
        array, info = preprocess_image(image, config, index=index)
        arrays.append(array)
        infos.append(info)
    return np.stack(arrays), infos


def boxes_to_source(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map ``(N, 4)`` x1y1x2y2 boxes from input pixels to source pixels, clipped to the source."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    offset = np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], dtype=np.float32)
    scale = np.array([info.scale_x, info.scale_y, info.scale_x, info.scale_y], dtype=np.float32)
    mapped = (boxes - offset) / scale
    height, width = info.source_size
    mapped[:, 0::2] = np.clip(mapped[:, 0::2], 0, width)
    mapped[:, 1::2] = np.clip(mapped[:, 1::2], 0, height)
    return mapped


def boxes_to_input(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Inverse of :func:`boxes_to_source` (without clipping): source pixels -> input pixels."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([info.scale_x, info.scale_y, info.scale_x, info.scale_y], dtype=np.float32)
    offset = np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], dtype=np.float32)
    return boxes * scale + offset


@dataclass(frozen=True)
class FrameInput:
    """The input of a frame graph: ``uint8 (N, height, width, 3)`` camera frames in ``channels`` order
    (``bgr`` or ``rgb``); the graph letterboxes, reorders and normalises them as :func:`preprocess_image`
    does and returns boxes in the frames' pixels (:mod:`retina_edge.export.frame_graph`)."""

    height: int
    width: int
    channels: str = "bgr"

    def __post_init__(self) -> None:
        if self.channels not in CHANNEL_ORDERS:
            raise RetinaEdgeError(f"unknown frame channel order {self.channels!r}; expected one of {CHANNEL_ORDERS}")
        for side in (self.height, self.width):
            if not isinstance(side, int) or not 1 <= side <= MAX_FRAME_SIDE:
                raise RetinaEdgeError(f"a frame of {self.width}x{self.height} (width x height) is not usable: each side "
                                      f"must be a whole number from 1 to {MAX_FRAME_SIDE}")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return self.height, self.width

    def __str__(self) -> str:
        return f"{self.width}x{self.height} {self.channels.upper()}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrameInput:
        return cls(**data)


def check_frame(image: np.ndarray, frame: FrameInput, index: int = 0) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 RGB image of the frame's size (see :func:`frame_batch`)."""
    check_image(image, index)
    if image.shape[:2] != frame.size:
        raise DataError(f"image {index} is {image.shape[1]}x{image.shape[0]}; this graph takes {frame.width}x"
                        f"{frame.height} frames only (its letterbox is built in): export a frame graph for "
                        "this size, or use a graph without a frame input, which takes images of any size")
    return image


def frame_batch(images: Sequence[np.ndarray], frame: FrameInput) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """``(H, W, 3)`` uint8 RGB images of the frame's size -> the ``(B, H, W, 3)`` uint8 batch a frame
    graph takes (channels in its order, one copy) and, for each, the identity placement: the graph
    returns boxes in frame pixels. A frame of another size is refused: the graph's letterbox is made
    for one camera resolution, and letterboxing onto it here would resample every frame twice and
    put back the host work the graph takes over."""
    import cv2

    if len(images) == 0:
        raise DataError("no images to preprocess")
    batch = np.empty((len(images), frame.height, frame.width, 3), dtype=np.uint8)
    for index, image in enumerate(images):
        check_frame(image, frame, index)
        if frame.channels == "bgr":  # OpenCV swaps into the batch: 0.07 ms for 1280x720 (NumPy's [..., ::-1]: 11 ms)
            cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR, dst=batch[index])
        else:
            batch[index] = image
    info = LetterboxInfo(1.0, 1.0, 0, 0, frame.size, frame.size)
    return batch, [info] * len(images)


def input_batch(images: Sequence[np.ndarray], config: PreprocessConfig,
                frame: FrameInput | None = None) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """A graph's input for ``images`` and where each landed in it: the frames themselves for a frame
    graph (:func:`frame_batch`), else the normalised batch :func:`preprocess_batch` makes."""
    return frame_batch(images, frame) if frame is not None else preprocess_batch(images, config)
