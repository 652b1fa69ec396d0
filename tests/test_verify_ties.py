"""verify's FP32 criterion: a graph that computes the reference's numbers passes even where
near-equal scores make top-k and NMS pick other (equal) candidates; a graph that does not, fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina_edge.export.onnx_export import ExportOptions, export_onnx
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime import Detector
from retina_edge.quality.verify import run_verify
from tiny import tiny_model


def near_tied_model():
    """Class scores all within ~1e-4 of each other: float32 summation order decides every top-k."""
    model = tiny_model(score_thresh=0.05)
    with torch.no_grad():
        model.head.classification_head.cls_logits.weight.mul_(1e-4)
        model.head.classification_head.cls_logits.bias.fill_(-1.0)
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (120, 150, 3), dtype=np.uint8) for _ in range(4)]


@pytest.mark.parametrize("tail", ["decode", "none"])
def test_faithful_fp32_graph_passes_despite_tie_reorderings(tmp_path, images, tail):
    model = near_tied_model()
    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160), tail=tail))
    report, _, _ = run_verify(Detector(path), model, images)
    assert report.ap_vs_reference < 0.98  # the detections do differ: other candidates among equals
    assert report.passed, report.failures
    assert "order of near-equal scores" in report.notes[0]
    assert all(t.max_rel < 1e-4 and t.identical > 0.9 for t in report.tensors)


def test_fp32_graph_of_other_weights_still_fails(tmp_path, images):
    model = near_tied_model()
    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160)))
    with torch.no_grad():  # the reference drifts 1% from what was exported
        model.head.regression_head.bbox_reg.weight.mul_(1.01)
    report, _, _ = run_verify(Detector(path), model, images)
    assert not report.passed and not report.notes


def test_reference_without_candidates_proves_nothing(tmp_path, images):
    """Other weights of the same architecture whose scores all stay below the threshold: nothing
    pairs, so the tensor figures must say so instead of reading as a perfect match (they read
    max|d| 0, cos 1 and turned every failure into a note before)."""
    model = tiny_model()
    path = export_onnx(model, tmp_path / "m.onnx", ExportOptions(preprocess=PreprocessConfig(128, 160)))
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.fill_(-20.0)  # no score above the threshold
    report, reference, _ = run_verify(Detector(path), model, images)
    assert not any(len(r) for r in reference)
    assert not report.passed and not report.notes
    assert all(t.compared == 0 and t.candidates > 0 for t in report.tensors)
    from retina_edge.quality.report import terminal_table

    assert "nothing compared: none of" in terminal_table(report)
