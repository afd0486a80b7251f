"""Tests for mrcnn.metrics: trim_zeros, matching, VOC-style AP, recall."""

import numpy as np
import pytest

from mrcnn import metrics


def test_trim_zeros():
    x = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(metrics.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 1, 0]])
    with pytest.raises(ValueError, match="2-D"):
        metrics.trim_zeros(np.zeros(4))


# --------------------------------------------------------------------------- metrics


def _instances(boxes, shape=(32, 32)):
    masks = np.zeros(shape + (len(boxes),), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    return np.array(boxes, dtype=np.int32).reshape(-1, 4), masks


def test_compute_ap_perfect_and_wrong():
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10), (15, 15, 30, 30)])
    gt_ids = np.array([1, 2])
    ap, precisions, recalls, overlaps = metrics.compute_ap(
        gt_boxes, gt_ids, gt_masks, gt_boxes, gt_ids, np.array([0.9, 0.8]), gt_masks
    )
    assert ap == pytest.approx(1.0)
    np.testing.assert_allclose(recalls, [0, 0.5, 1, 1])
    np.testing.assert_allclose(precisions, [1, 1, 1, 0])
    np.testing.assert_allclose(overlaps, np.eye(2))
    # wrong class on the higher-scoring prediction: precision 0 at rank 1, 1/2 at rank 2 -> AP = 0.5 * 0.5
    ap_wrong = metrics.compute_ap(
        gt_boxes, gt_ids, gt_masks, gt_boxes, np.array([2, 2]), np.array([0.9, 0.8]), gt_masks
    )[0]
    assert ap_wrong == pytest.approx(0.25)
    # no predictions -> AP 0; ap_range of perfect predictions is 1
    empty_boxes, empty_masks = _instances([])
    assert (
        metrics.compute_ap(gt_boxes, gt_ids, gt_masks, empty_boxes, np.zeros(0), np.zeros(0), empty_masks)[0]
        == 0.0
    )
    scores = np.array([0.9, 0.8])
    ap_range = metrics.compute_ap_range(
        gt_boxes, gt_ids, gt_masks, gt_boxes, gt_ids, scores, gt_masks, None, 0
    )
    assert ap_range == pytest.approx(1.0)


def test_compute_matches_orders_by_score_and_trims_padding():
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10), (15, 15, 30, 30)])
    gt_boxes = np.concatenate([gt_boxes, np.zeros((1, 4), np.int32)])  # padding row
    pred_boxes, pred_masks = _instances([(15, 15, 30, 29), (0, 0, 10, 10), (0, 0, 9, 10)])
    args = (
        gt_boxes,
        np.array([1, 1, 0]),
        gt_masks,
        pred_boxes,
        np.array([1, 1, 1]),
        np.array([0.5, 0.9, 0.7]),
        pred_masks,
    )
    gt_match, pred_match, overlaps = metrics.compute_matches(*args)
    # score order: pred 1 (-> gt 0), pred 2 (duplicate of gt 0, unmatched), pred 0 (-> gt 1)
    np.testing.assert_array_equal(pred_match, [0, -1, 1])
    np.testing.assert_array_equal(gt_match, [0, 2])
    assert overlaps.shape == (3, 2)
    np.testing.assert_allclose(overlaps[2, 1], 15 * 14 / 225)
    # score_threshold leaves low-scoring predictions unmatched
    _, pred_match, _ = metrics.compute_matches(*args, score_threshold=0.6)
    np.testing.assert_array_equal(pred_match, [0, -1, -1])


def test_compute_ap_range_prints(capsys):
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10)])
    pred_boxes, pred_masks = _instances([(0, 0, 10, 8)])  # IoU 0.8
    ap = metrics.compute_ap_range(
        gt_boxes, np.array([1]), gt_masks, pred_boxes, np.array([1]), np.array([0.9]), pred_masks
    )
    # matched for thresholds 0.50..0.80 (7 of 10)
    assert ap == pytest.approx(0.7)
    out = capsys.readouterr().out
    assert "AP @0.50" in out and "AP @0.50-0.95" in out


def test_compute_recall():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [21, 21, 30, 30], [60, 60, 70, 70]])
    recall, positive_ids = metrics.compute_recall(pred, gt, 0.7)
    assert recall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(positive_ids, [0, 1, 2])
    recall, positive_ids = metrics.compute_recall(np.zeros((0, 4)), gt, 0.5)
    assert recall == 0.0 and positive_ids.size == 0
