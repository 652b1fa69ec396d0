"""COCO-format data: synthetic generation, parsing, and the errors bad input gets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from retina_edge.data.coco_dataset import load_coco_index, resolve_split
from retina_edge.errors import DataError
from retina_edge.imageio import read_image_rgb
from retina_edge.data.synth import CLASSES, SynthConfig, render_image, write_dataset


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_images=12, seed=3))
    return out


def test_synth_is_deterministic_and_varied():
    image_a, boxes_a = render_image(SynthConfig(seed=5), 7)
    image_b, boxes_b = render_image(SynthConfig(seed=5), 7)
    assert np.array_equal(image_a, image_b) and boxes_a == boxes_b
    image_c, _ = render_image(SynthConfig(seed=6), 7)
    assert not np.array_equal(image_a, image_c)
    sides = [max(b[2], b[3]) for i in range(60) for _, b in render_image(SynthConfig(seed=1), i)[1]]
    assert min(sides) < 20 and max(sides) > 150  # small and large objects: P3 .. P7 of the preset
    labels = {label for i in range(60) for label, _ in render_image(SynthConfig(seed=1), i)[1]}
    assert labels == set(range(len(CLASSES)))


def test_synth_writes_coco_layout(synth_dir):
    ann_file, image_dir = resolve_split(synth_dir, "val")
    assert ann_file.name == "instances_val.json" and image_dir.name == "val"
    index = load_coco_index(ann_file, image_dir)
    assert len(index.images) == 2 and index.class_names == CLASSES
    assert index.category_ids == tuple(range(1, len(CLASSES) + 1))
    train = load_coco_index(*resolve_split(synth_dir, "train"))
    assert len(train.images) == 10
    record = train.images[0]
    image = read_image_rgb(record.path)
    assert image.shape == (record.height, record.width, 3)
    assert np.all(record.boxes[:, 2] <= record.width) and np.all(record.boxes[:, 0] >= 0)


def _rewrite(synth_dir, tmp_path, mutate):
    data = json.loads((synth_dir / "annotations" / "instances_train.json").read_text())
    mutate(data)
    path = tmp_path / "instances_bad.json"
    path.write_text(json.dumps(data))
    return path


def test_missing_image_names_the_file(synth_dir, tmp_path):
    path = _rewrite(synth_dir, tmp_path, lambda d: d["images"][0].update(file_name="nope.jpg"))
    with pytest.raises(DataError, match="nope.jpg"):
        load_coco_index(path, synth_dir / "train")


def test_undeclared_category_names_the_file(synth_dir, tmp_path):
    path = _rewrite(synth_dir, tmp_path, lambda d: d["annotations"][0].update(category_id=77))
    with pytest.raises(DataError, match=r"instances_bad.json.*category_id 77"):
        load_coco_index(path, synth_dir / "train")


def test_empty_dataset_is_an_error(synth_dir, tmp_path):
    path = _rewrite(synth_dir, tmp_path, lambda d: d.update(images=[], annotations=[]))
    with pytest.raises(DataError, match="empty"):
        load_coco_index(path, synth_dir / "train")


def test_crowd_and_degenerate_boxes_are_skipped_and_counted(synth_dir, tmp_path):
    def mutate(d):
        d["annotations"][0]["iscrowd"] = 1
        d["annotations"][1]["bbox"][2] = 0.5
    index = load_coco_index(_rewrite(synth_dir, tmp_path, mutate), synth_dir / "train")
    assert index.skipped_crowd == 1 and index.dropped_degenerate == 1


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        read_image_rgb(bad)


def test_colour_order_is_rgb(tmp_path):
    import cv2

    bgr = np.zeros((4, 4, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    assert read_image_rgb(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]


def test_missing_annotation_file(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    with pytest.raises(DataError, match="annotation file not found"):
        resolve_split(tmp_path, "val")
