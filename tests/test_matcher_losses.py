"""Matcher thresholds and focal / box losses against their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retina_edge.model.box_coder import BoxCoder
from retina_edge.model.losses import box_regression_loss, classification_loss, sigmoid_focal_loss
from retina_edge.model.matcher import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, Matcher


def test_matcher_thresholds():
    iou = torch.tensor([[0.8, 0.45, 0.3, 0.5, 0.39999]])
    matches = Matcher(high=0.5, low=0.4, allow_low_quality_matches=False)(iou)
    assert matches.tolist() == [0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, 0, BELOW_LOW_THRESHOLD]


def test_matcher_low_quality_matches_claim_best_anchor():
    # gt 1 never reaches 0.5: with low-quality matching it still claims its best anchors (ties too).
    iou = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.0, 0.3, 0.3, 0.1]])
    strict = Matcher(high=0.5, low=0.4, allow_low_quality_matches=False)(iou)
    lenient = Matcher(high=0.5, low=0.4, allow_low_quality_matches=True)(iou)
    assert strict.tolist() == [0, -1, -1, -1]
    assert lenient.tolist() == [0, 1, 1, -1]


def test_matcher_without_gt_is_all_background():
    assert Matcher(high=0.5, low=0.4, allow_low_quality_matches=True)(torch.zeros((0, 7))).tolist() == [-1] * 7


def test_matcher_rejects_inverted_thresholds():
    with pytest.raises(ValueError):
        Matcher(high=0.3, low=0.5, allow_low_quality_matches=True)


def test_focal_loss_formula():
    logits = torch.tensor([2.0, -1.0, 0.5])
    targets = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(logits)
    p_t = torch.where(targets == 1, p, 1 - p)
    alpha_t = torch.where(targets == 1, torch.tensor(0.25), torch.tensor(0.75))
    expected = -alpha_t * (1 - p_t) ** 2 * torch.log(p_t)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)


def test_focal_loss_is_half_bce_at_gamma0_alpha_half():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(100, generator=g) * 3, (torch.rand(100, generator=g) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=0.5, gamma=0.0), 0.5 * bce)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0), bce)


def test_classification_loss_ignores_between_and_normalises_by_foreground():
    logits = torch.zeros(1, 4, 2)
    matched = [torch.tensor([0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, 0])]
    loss = classification_loss(logits, [torch.tensor([1])], matched, alpha=0.25, gamma=2.0)
    per_elem_neg = sigmoid_focal_loss(torch.zeros(1), torch.zeros(1))
    per_elem_pos = sigmoid_focal_loss(torch.zeros(1), torch.ones(1))
    # 3 valid anchors x 2 classes: two positives (anchor 0 and 3, class 1), four negatives; 2 fg.
    expected = (2 * per_elem_pos + 4 * per_elem_neg) / 2
    torch.testing.assert_close(loss, expected[0])


@pytest.mark.parametrize("loss_type", ["l1", "giou"])
def test_box_loss_zero_for_perfect_regression(loss_type):
    coder = BoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 32.0, 32.0], [10.0, 10.0, 50.0, 70.0]])
    gt = torch.tensor([[2.0, 3.0, 30.0, 36.0]])
    matched = [torch.tensor([0, -1])]
    perfect = torch.zeros(1, 2, 4)
    perfect[0, 0] = coder.encode(gt, anchors[:1])[0]
    assert box_regression_loss(perfect, [gt], anchors, matched, box_coder=coder, loss_type=loss_type) < 1e-5
    bad = box_regression_loss(torch.zeros(1, 2, 4), [gt], anchors, matched, box_coder=coder, loss_type=loss_type)
    assert bad > 0.01
