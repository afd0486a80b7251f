"""Tests for mrcnn.boxes: box geometry in numpy, and its TensorFlow forms held equal to numpy."""

import math

import numpy as np
import pytest
from box_strategies import FAST, box_strategy
from hypothesis import given
from hypothesis import strategies as st

import mrcnn.boxes as box_ops

# --------------------------------------------------------------------------- numpy forms


def test_extract_bboxes_hand_case_and_empty_mask():
    mask = np.zeros((10, 12, 3), dtype=bool)
    mask[2:5, 3:7, 0] = True
    mask[9, 11, 1] = True
    mask[0, 0, 1] = True
    boxes = box_ops.extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 7], [0, 0, 10, 12], [0, 0, 0, 0]])


def test_extract_bboxes_rejects_2d():
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        box_ops.extract_bboxes(np.zeros((4, 4)))


@FAST
@given(st.lists(box_strategy(40), min_size=1, max_size=4))
def test_extract_bboxes_recovers_filled_boxes(boxes):
    mask = np.zeros((100, 100, len(boxes)), dtype=np.uint8)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        mask[y1:y2, x1:x2, i] = 1
    np.testing.assert_array_equal(box_ops.extract_bboxes(mask), np.array(boxes))


def test_compute_iou_and_overlaps_hand_case():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 5, 10]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = box_ops.compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1.0, 25 / 175, 0.0, 0.5])
    overlaps = box_ops.compute_overlaps(box[None], boxes)
    assert overlaps.dtype == np.float64 and overlaps.shape == (1, 4)
    np.testing.assert_allclose(overlaps[0], iou)
    assert box_ops.compute_overlaps(np.zeros((0, 4)), boxes).shape == (0, 4)


@FAST
@given(st.lists(box_strategy(), min_size=1, max_size=5), st.lists(box_strategy(), min_size=1, max_size=5))
def test_overlaps_symmetric_bounded_and_match_compute_iou(b1, b2):
    b1, b2 = np.array(b1), np.array(b2)
    ov = box_ops.compute_overlaps(b1, b2)
    np.testing.assert_allclose(ov, box_ops.compute_overlaps(b2, b1).T)
    assert np.all((ov >= 0) & (ov <= 1))
    np.testing.assert_allclose(np.diag(box_ops.compute_overlaps(b1, b1)), 1.0)
    areas2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    for i, box in enumerate(b1):
        area = (box[2] - box[0]) * (box[3] - box[1])
        np.testing.assert_allclose(ov[i], box_ops.compute_iou(box, b2, area, areas2))


def test_compute_overlaps_masks_hand_case():
    m1 = np.zeros((4, 4, 2), dtype=bool)
    m1[:2, :, 0] = True  # 8 px
    m1[:, :, 1] = True  # 16 px
    m2 = np.zeros((4, 4, 2), dtype=np.float32)
    m2[:, :2, 0] = 1.0  # 8 px, overlap with m1[0]: 4
    m2[:, :, 1] = 0.4  # below the 0.5 threshold -> empty mask
    ov = box_ops.compute_overlaps_masks(m1, m2)
    assert ov.dtype == np.float32
    np.testing.assert_allclose(ov, [[4 / 12, 0.0], [8 / 16, 0.0]])
    assert box_ops.compute_overlaps_masks(m1, np.zeros((4, 4, 0))).shape == (2, 0)
    with pytest.raises(ValueError, match="share"):
        box_ops.compute_overlaps_masks(m1, np.zeros((5, 4, 1)))


@FAST
@given(st.lists(box_strategy(30), min_size=1, max_size=4))
def test_mask_overlaps_of_box_masks_equal_box_overlaps(boxes):
    masks = np.zeros((80, 80, len(boxes)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    np.testing.assert_allclose(
        box_ops.compute_overlaps_masks(masks, masks), box_ops.compute_overlaps(boxes, boxes), rtol=1e-6
    )


def test_non_max_suppression_hand_case():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    # box 1 wins; box 0 (IoU 81/119 = 0.68) and box 3 (IoU 72/118 = 0.61) are suppressed at 0.5.
    keep = box_ops.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [1, 2])
    # At threshold 0.65, box 3 (0.61) survives but box 0 (0.68) does not.
    np.testing.assert_array_equal(box_ops.non_max_suppression(boxes, scores, 0.65), [1, 2, 3])
    with pytest.raises(ValueError, match="at least one box"):
        box_ops.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)


@FAST
@given(st.lists(box_strategy(), min_size=1, max_size=8), st.floats(0.1, 0.9))
def test_non_max_suppression_kept_boxes_do_not_overlap(boxes, threshold):
    boxes = np.array(boxes, dtype=np.float32)
    scores = np.linspace(1, 0.1, len(boxes))
    keep = box_ops.non_max_suppression(boxes, scores, threshold)
    assert keep[0] == 0
    ov = box_ops.compute_overlaps(boxes[keep], boxes[keep])
    np.fill_diagonal(ov, 0)
    assert np.all(ov <= threshold + 1e-6)
    dropped = np.setdiff1d(np.arange(len(boxes)), keep)
    if dropped.size:
        assert np.all(box_ops.compute_overlaps(boxes[dropped], boxes[keep]).max(axis=1) > threshold)


def test_box_refinement_hand_case():
    box = np.array([[0, 0, 10, 20]])
    gt = np.array([[5, 0, 25, 10]])
    deltas = box_ops.box_refinement(box, gt)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[1.0, -0.25, math.log(2), math.log(0.5)]], rtol=1e-6)
    out = box_ops.apply_box_deltas(box, deltas)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, gt, atol=1e-5)


@FAST
@given(st.lists(st.tuples(box_strategy(), box_strategy()), min_size=1, max_size=6))
def test_apply_box_deltas_inverts_box_refinement(pairs):
    b = np.array([p[0] for p in pairs], dtype=np.float32)
    g = np.array([p[1] for p in pairs], dtype=np.float32)
    np.testing.assert_allclose(box_ops.apply_box_deltas(b, box_ops.box_refinement(b, g)), g, atol=1e-3)


def test_box_refinement_graph_matches_numpy():
    pytest.importorskip("tensorflow")
    b = np.array([[0, 0, 10, 20], [3, 4, 9, 7]], dtype=np.float32)
    g = np.array([[5, 0, 25, 10], [2, 2, 12, 8]], dtype=np.float32)
    out = box_ops.box_refinement_graph(b, g)
    assert out.dtype.name == "float32"
    np.testing.assert_allclose(out.numpy(), box_ops.box_refinement(b, g), rtol=1e-6)


@FAST
@given(st.lists(box_strategy(), min_size=1, max_size=6))
def test_zero_deltas_are_the_identity(boxes):
    boxes = np.array(boxes, np.float32)
    np.testing.assert_allclose(box_ops.apply_box_deltas(boxes, np.zeros_like(boxes)), boxes, atol=1e-4)
    np.testing.assert_allclose(box_ops.box_refinement(boxes, boxes), 0, atol=1e-6)


# --------------------------------------------------------------------------- boxes normalization


def test_norm_denorm_hand_case():
    boxes = np.array([[0, 0, 10, 20], [5, 5, 11, 21]])
    n = box_ops.norm_boxes(boxes, (11, 21))
    assert n.dtype == np.float32
    np.testing.assert_allclose(n, [[0, 0, 0.9, 0.95], [0.5, 0.25, 1.0, 1.0]], rtol=1e-6)
    d = box_ops.denorm_boxes(n, (11, 21))
    assert d.dtype == np.int32
    np.testing.assert_array_equal(d, boxes)


@FAST
@given(st.integers(2, 1500), st.integers(2, 1500), st.data())
def test_denorm_inverts_norm_on_integer_boxes(h, w, data):
    ys = data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2))
    xs = data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2))
    boxes = np.array([[min(ys), min(xs), max(ys), max(xs)]])
    np.testing.assert_array_equal(box_ops.denorm_boxes(box_ops.norm_boxes(boxes, (h, w)), (h, w)), boxes)


# --------------------------------------------------------------------------- TF forms == numpy forms


def _random_boxes(rng, count, extent=100.0, min_side=0.5):
    """float32 [count, 4] pixel boxes (y1, x1, y2, x2) with sides in [min_side, 50)."""
    corners = rng.uniform(0, extent, (count, 2))
    sides = rng.uniform(min_side, 50, (count, 2))
    return np.concatenate([corners, corners + sides], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_overlaps_graph_equals_compute_overlaps(seed):
    rng = np.random.default_rng(seed)
    b1 = _random_boxes(rng, 7)
    b2 = np.concatenate(
        [_random_boxes(rng, 9), b1[:2], np.zeros((1, 4), np.float32)]
    )  # equal and empty boxes
    out = box_ops.overlaps_graph(b1, b2).numpy()
    assert out.dtype == np.float32 and out.shape == (7, 12)
    np.testing.assert_allclose(out, box_ops.compute_overlaps(b1, b2), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_apply_box_deltas_graph_equals_apply_box_deltas(seed):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 20)
    deltas = rng.normal(0, 0.3, (20, 4)).astype(np.float32)
    out = box_ops.apply_box_deltas_graph(boxes, deltas).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, box_ops.apply_box_deltas(boxes, deltas), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_box_refinement_graph_equals_box_refinement(seed):
    rng = np.random.default_rng(seed)
    boxes, gt_boxes = _random_boxes(rng, 20), _random_boxes(rng, 20)
    out = box_ops.box_refinement_graph(boxes, gt_boxes).numpy()
    np.testing.assert_allclose(out, box_ops.box_refinement(boxes, gt_boxes), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_norm_and_denorm_graph_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 1500)), int(rng.integers(2, 1500)))
    pixels = np.sort(rng.integers(0, min(shape) + 1, (30, 2, 2)), axis=1).transpose(0, 2, 1).reshape(30, 4)
    pixels = pixels[:, [0, 2, 1, 3]]  # (y1, x1, y2, x2) with y1 <= y2, x1 <= x2
    normalized = box_ops.norm_boxes_graph(pixels, shape).numpy()
    np.testing.assert_allclose(normalized, box_ops.norm_boxes(pixels, shape), rtol=1e-6, atol=1e-7)
    denormalized = box_ops.denorm_boxes_graph(normalized, shape).numpy()
    assert denormalized.dtype == np.int32
    np.testing.assert_array_equal(
        denormalized, box_ops.denorm_boxes(box_ops.norm_boxes(pixels, shape), shape)
    )
    np.testing.assert_array_equal(denormalized, pixels)


def test_clip_boxes_graph_one_window_and_one_per_image():
    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, 12).reshape(2, 6, 4) - 20.0
    windows = np.array([[0, 0, 60, 80], [10, 5, 50, 40]], np.float32)
    low, high = windows[:, None, [0, 1, 0, 1]], windows[:, None, [2, 3, 2, 3]]
    np.testing.assert_array_equal(box_ops.clip_boxes_graph(boxes, windows).numpy(), np.clip(boxes, low, high))
    np.testing.assert_array_equal(
        box_ops.clip_boxes_graph(boxes[0], windows[1]).numpy(), np.clip(boxes[0], low[1], high[1])
    )
