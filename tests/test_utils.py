"""Tests for mrcnn.utils geometry, resizing, anchors and metrics."""

import math
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn import utils

FAST = settings(max_examples=40, deadline=None)


def box_strategy(max_coord=100):
    """Integer pixel boxes (y1, x1, y2, x2) with positive height and width."""
    return st.tuples(
        st.integers(0, max_coord - 1), st.integers(0, max_coord - 1), st.integers(1, 50), st.integers(1, 50)
    ).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


def test_import_does_not_load_tensorflow():
    code = "import sys, mrcnn.utils; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_coco_model_url():
    assert utils.COCO_MODEL_URL == (
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
    )


# --------------------------------------------------------------------------- boxes


def test_extract_bboxes_hand_case_and_empty_mask():
    mask = np.zeros((10, 12, 3), dtype=bool)
    mask[2:5, 3:7, 0] = True
    mask[9, 11, 1] = True
    mask[0, 0, 1] = True
    boxes = utils.extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 7], [0, 0, 10, 12], [0, 0, 0, 0]])


def test_extract_bboxes_rejects_2d():
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        utils.extract_bboxes(np.zeros((4, 4)))


@FAST
@given(st.lists(box_strategy(40), min_size=1, max_size=4))
def test_extract_bboxes_recovers_filled_boxes(boxes):
    mask = np.zeros((100, 100, len(boxes)), dtype=np.uint8)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        mask[y1:y2, x1:x2, i] = 1
    np.testing.assert_array_equal(utils.extract_bboxes(mask), np.array(boxes))


def test_compute_iou_and_overlaps_hand_case():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 5, 10]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = utils.compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1.0, 25 / 175, 0.0, 0.5])
    overlaps = utils.compute_overlaps(box[None], boxes)
    assert overlaps.dtype == np.float64 and overlaps.shape == (1, 4)
    np.testing.assert_allclose(overlaps[0], iou)
    assert utils.compute_overlaps(np.zeros((0, 4)), boxes).shape == (0, 4)


@FAST
@given(st.lists(box_strategy(), min_size=1, max_size=5), st.lists(box_strategy(), min_size=1, max_size=5))
def test_overlaps_symmetric_bounded_and_match_compute_iou(b1, b2):
    b1, b2 = np.array(b1), np.array(b2)
    ov = utils.compute_overlaps(b1, b2)
    np.testing.assert_allclose(ov, utils.compute_overlaps(b2, b1).T)
    assert np.all((ov >= 0) & (ov <= 1))
    np.testing.assert_allclose(np.diag(utils.compute_overlaps(b1, b1)), 1.0)
    areas2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    for i, box in enumerate(b1):
        area = (box[2] - box[0]) * (box[3] - box[1])
        np.testing.assert_allclose(ov[i], utils.compute_iou(box, b2, area, areas2))


def test_compute_overlaps_masks_hand_case():
    m1 = np.zeros((4, 4, 2), dtype=bool)
    m1[:2, :, 0] = True  # 8 px
    m1[:, :, 1] = True  # 16 px
    m2 = np.zeros((4, 4, 2), dtype=np.float32)
    m2[:, :2, 0] = 1.0  # 8 px, overlap with m1[0]: 4
    m2[:, :, 1] = 0.4  # below the 0.5 threshold -> empty mask
    ov = utils.compute_overlaps_masks(m1, m2)
    assert ov.dtype == np.float32
    np.testing.assert_allclose(ov, [[4 / 12, 0.0], [8 / 16, 0.0]])
    assert utils.compute_overlaps_masks(m1, np.zeros((4, 4, 0))).shape == (2, 0)
    with pytest.raises(ValueError, match="share"):
        utils.compute_overlaps_masks(m1, np.zeros((5, 4, 1)))


@FAST
@given(st.lists(box_strategy(30), min_size=1, max_size=4))
def test_mask_overlaps_of_box_masks_equal_box_overlaps(boxes):
    masks = np.zeros((80, 80, len(boxes)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    np.testing.assert_allclose(
        utils.compute_overlaps_masks(masks, masks), utils.compute_overlaps(boxes, boxes), rtol=1e-6
    )


def test_non_max_suppression_hand_case():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    # box 1 wins; box 0 (IoU 81/119 = 0.68) and box 3 (IoU 72/118 = 0.61) are suppressed at 0.5.
    keep = utils.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [1, 2])
    # At threshold 0.65, box 3 (0.61) survives but box 0 (0.68) does not.
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.65), [1, 2, 3])
    with pytest.raises(ValueError, match="at least one box"):
        utils.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)


@FAST
@given(st.lists(box_strategy(), min_size=1, max_size=8), st.floats(0.1, 0.9))
def test_non_max_suppression_kept_boxes_do_not_overlap(boxes, threshold):
    boxes = np.array(boxes, dtype=np.float32)
    scores = np.linspace(1, 0.1, len(boxes))
    keep = utils.non_max_suppression(boxes, scores, threshold)
    assert keep[0] == 0
    ov = utils.compute_overlaps(boxes[keep], boxes[keep])
    np.fill_diagonal(ov, 0)
    assert np.all(ov <= threshold + 1e-6)
    dropped = np.setdiff1d(np.arange(len(boxes)), keep)
    if dropped.size:
        assert np.all(utils.compute_overlaps(boxes[dropped], boxes[keep]).max(axis=1) > threshold)


def test_box_refinement_hand_case():
    box = np.array([[0, 0, 10, 20]])
    gt = np.array([[5, 0, 25, 10]])
    deltas = utils.box_refinement(box, gt)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[1.0, -0.25, math.log(2), math.log(0.5)]], rtol=1e-6)
    out = utils.apply_box_deltas(box, deltas)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, gt, atol=1e-5)


@FAST
@given(st.lists(st.tuples(box_strategy(), box_strategy()), min_size=1, max_size=6))
def test_apply_box_deltas_inverts_box_refinement(pairs):
    b = np.array([p[0] for p in pairs], dtype=np.float32)
    g = np.array([p[1] for p in pairs], dtype=np.float32)
    np.testing.assert_allclose(utils.apply_box_deltas(b, utils.box_refinement(b, g)), g, atol=1e-3)


def test_box_refinement_graph_matches_numpy():
    pytest.importorskip("tensorflow")
    b = np.array([[0, 0, 10, 20], [3, 4, 9, 7]], dtype=np.float32)
    g = np.array([[5, 0, 25, 10], [2, 2, 12, 8]], dtype=np.float32)
    out = utils.box_refinement_graph(b, g)
    assert out.dtype.name == "float32"
    np.testing.assert_allclose(out.numpy(), utils.box_refinement(b, g), rtol=1e-6)


def test_batch_slice_stacks_and_unwraps():
    tf = pytest.importorskip("tensorflow")
    x = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))
    y = tf.constant(np.ones((3, 4), dtype=np.float32))
    single = utils.batch_slice(x, lambda a: a * 2, 3)
    np.testing.assert_allclose(single.numpy(), np.arange(12).reshape(3, 4) * 2)
    total, first = utils.batch_slice([x, y], lambda a, b: (tf.reduce_sum(a + b), a[0]), 3, names=["s", "f"])
    np.testing.assert_allclose(total.numpy(), [10, 26, 42])
    np.testing.assert_allclose(first.numpy(), [0, 4, 8])


# --------------------------------------------------------------------------- resizing


def test_resize_image_square_hand_case():
    image = np.full((32, 64, 3), 200, dtype=np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=40, max_dim=96, mode="square")
    # scale = max(1, 40/32) = 1.25 -> 40 x 80, padded to 96 x 96
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert scale == 1.25 and crop is None
    assert window == (28, 8, 68, 88)
    assert padding == [(28, 28), (8, 8), (0, 0)]
    assert np.all(out[28:68, 8:88] == 200) and out[:28].sum() == 0 and out[:, :8].sum() == 0


def test_resize_image_square_downscales_to_max_dim():
    image = np.zeros((100, 50, 3), dtype=np.float32)
    out, window, scale, _, _ = utils.resize_image(image, min_dim=20, max_dim=64, mode="square")
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    assert scale == pytest.approx(0.64)
    assert window == (0, 16, 64, 48)


def test_resize_image_none_pad64_crop():
    image = np.arange(70 * 90 * 3, dtype=np.uint16).reshape(70, 90, 3)
    out, window, scale, padding, crop = utils.resize_image(image, mode="none")
    assert out is image and window == (0, 0, 70, 90) and scale == 1 and crop is None
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, mode="pad64")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint16 and scale == 1
    assert padding == [(29, 29), (19, 19), (0, 0)] and window == (29, 19, 99, 109)
    np.testing.assert_array_equal(out[29:99, 19:109], image)
    random.seed(3)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, mode="crop")
    y, x, h, w = crop
    assert (h, w) == (64, 64) and out.shape == (64, 64, 3) and window == (0, 0, 64, 64)
    np.testing.assert_array_equal(out, image[y : y + 64, x : x + 64])


def test_resize_image_errors():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="none, square, pad64, crop"):
        utils.resize_image(image, mode="stretch")
    with pytest.raises(ValueError, match="multiple of 64"):
        utils.resize_image(image, min_dim=100, mode="pad64")
    with pytest.raises(ValueError, match="max_dim"):
        utils.resize_image(image, min_dim=10, mode="square")


@FAST
@given(
    st.integers(8, 120),
    st.integers(8, 120),
    st.sampled_from(["none", "square", "pad64", "crop"]),
    st.sampled_from([np.uint8, np.float32]),
)
def test_resize_image_window_holds_resized_image(h, w, mode, dtype):
    image = np.ones((h, w, 3), dtype=dtype)
    min_dim, max_dim = 64, 128
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=min_dim, max_dim=max_dim, mode=mode)
    assert out.dtype == dtype
    y1, x1, y2, x2 = window
    assert 0 <= y1 < y2 <= out.shape[0] and 0 <= x1 < x2 <= out.shape[1]
    inside = np.zeros(out.shape[:2], dtype=bool)
    inside[y1:y2, x1:x2] = True
    assert np.all(out[inside] == 1) and np.all(out[~inside] == 0)
    if mode == "crop":
        assert crop[2:] == (min_dim, min_dim) and window == (0, 0, min_dim, min_dim)
        return
    rh, rw = y2 - y1, x2 - x1
    assert (rh, rw) == (round(h * scale), round(w * scale))
    (top, bottom), (left, right), (c0, c1) = padding
    assert (c0, c1) == (0, 0) and (top, left) == (y1, x1)
    assert (top + rh + bottom, left + rw + right) == out.shape[:2]
    if mode == "square":
        assert out.shape[:2] == (max_dim, max_dim) and abs(top - bottom) <= 1 and abs(left - right) <= 1
    if mode == "pad64":
        assert out.shape[0] % 64 == 0 and out.shape[1] % 64 == 0 and min(rh, rw) >= min_dim


@FAST
@given(st.integers(20, 90), st.integers(20, 90), st.sampled_from(["square", "pad64", "crop"]))
def test_resize_mask_follows_resize_image(h, w, mode):
    mask = np.zeros((h, w, 2), dtype=bool)
    mask[h // 4 : h // 2, w // 4 : 3 * w // 4, 0] = True
    mask[:, :, 1] = True
    image = np.repeat(mask[:, :, :1].astype(np.float32), 3, axis=2)
    random.seed(0)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, max_dim=128, mode=mode)
    resized = utils.resize_mask(mask, scale, padding, crop)
    assert resized.dtype == bool and resized.shape[:2] == out.shape[:2] and resized.shape[2] == 2
    y1, x1, y2, x2 = window
    assert resized[y1:y2, x1:x2, 1].all() and resized[..., 1].sum() == (y2 - y1) * (x2 - x1)
    # The mask lines up with the bilinear-resized image: disagreement only on the boundary.
    disagree = np.sum(resized[..., 0] != (out[..., 0] >= 0.5))
    assert disagree <= 2 * (out.shape[0] + out.shape[1])


def test_resize_mask_keeps_dtype_and_pads():
    mask = np.zeros((4, 6, 1), dtype=np.uint8)
    mask[1:3, 2:4, 0] = 7
    out = utils.resize_mask(mask, 2, [(1, 1), (0, 2), (0, 0)])
    assert out.dtype == np.uint8 and out.shape == (10, 14, 1)
    np.testing.assert_array_equal(np.argwhere(out[..., 0] == 7).min(axis=0), [3, 4])
    assert out.sum() == 7 * 16


@FAST
@given(st.integers(1, 1000), st.integers(1, 1000), st.sampled_from(["square", "crop"]), st.data())
def test_resize_of_any_size_keeps_every_side_and_the_masks_aligned(h, w, mode, data):
    """Tiny and very elongated images: no side shrinks to 0 pixels and a full mask fills the window."""
    if mode == "crop":
        h, w = min(h, 200), min(w, 200)  # crop mode scales the short side up to min_dim: keep it small
    random.seed(data.draw(st.integers(0, 1000)))
    out, window, scale, padding, crop = utils.resize_image(
        np.ones((h, w, 3), np.uint8), min_dim=32, max_dim=64, mode=mode
    )
    y1, x1, y2, x2 = window
    assert out.shape == ((64, 64, 3) if mode == "square" else (32, 32, 3))
    assert 0 <= y1 < y2 <= out.shape[0] and 0 <= x1 < x2 <= out.shape[1]
    if mode == "square":
        assert (y2 - y1, x2 - x1) == (max(1, round(h * scale)), max(1, round(w * scale)))
    masks = np.ones((h, w, 1), bool)
    resized = utils.resize_mask(masks, scale, padding, crop)
    assert resized.shape == out.shape[:2] + (1,)
    np.testing.assert_array_equal(utils.extract_bboxes(resized), [window])
    assert resized.sum() == (y2 - y1) * (x2 - x1)
    normalized = utils.norm_boxes(np.array([window]), out.shape[:2])
    assert np.all(normalized >= 0) and np.all(normalized <= 1)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 5, 3), (5, 0)])
def test_resize_image_rejects_empty_images(shape):
    with pytest.raises(ValueError, match=r"resize_image got an empty image of shape"):
        utils.resize_image(np.zeros(shape, np.uint8), min_dim=64, max_dim=64, mode="square")


# --------------------------------------------------------------------------- masks


def test_minimize_expand_hand_case():
    mask = np.zeros((20, 20, 1), dtype=bool)
    mask[4:12, 6:10, 0] = True
    bbox = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(bbox, mask, (8, 8))
    assert mini.dtype == bool and mini.shape == (8, 8, 1) and mini.all()
    full = utils.expand_mask(bbox, mini, (20, 20, 3))
    assert full.dtype == bool
    np.testing.assert_array_equal(full, mask)
    with pytest.raises(ValueError, match="empty bounding box"):
        utils.minimize_mask(np.zeros((1, 4), np.int32), mask, (8, 8))


@FAST
@given(st.lists(box_strategy(60), min_size=1, max_size=3), st.integers(4, 28))
def test_minimize_expand_round_trip(boxes, mini):
    shape = (112, 112)
    mask = np.zeros(shape + (len(boxes),), dtype=bool)
    outer = []
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        mask[y1:y2, x1:x2, i] = True
        # a bbox twice as tall/wide as the filled box, so the mini mask holds a real edge
        outer.append((y1, x1, min(2 * y2 - y1, shape[0]), min(2 * x2 - x1, shape[1])))
    tight = utils.extract_bboxes(mask)
    mini_mask = utils.minimize_mask(tight, mask, (mini, mini))
    np.testing.assert_array_equal(utils.expand_mask(tight, mini_mask, shape), mask)
    outer = np.array(outer)
    back = utils.expand_mask(outer, utils.minimize_mask(outer, mask, (mini, mini)), shape)
    for i in range(len(boxes)):
        inter = np.sum(back[..., i] & mask[..., i])
        union = np.sum(back[..., i] | mask[..., i])
        y1, x1, y2, x2 = outer[i]
        cell = max((y2 - y1) / mini, (x2 - x1) / mini)
        # boundary error at most about one mini-mask cell along each edge
        assert union - inter <= 2 * (cell + 1) * ((y2 - y1) + (x2 - x1))
        assert not back[..., i][
            ~np.pad(np.ones((y2 - y1, x2 - x1), bool), [(y1, shape[0] - y2), (x1, shape[1] - x2)])
        ].any()


def test_unmold_mask():
    small = np.zeros((4, 4), dtype=np.float32)
    small[:, 2:] = 0.9
    full = utils.unmold_mask(small, (2, 4, 10, 12), (16, 16, 3))
    assert full.dtype == bool and full.shape == (16, 16)
    expected = np.zeros((16, 16), bool)
    expected[2:10, 8:12] = True
    np.testing.assert_array_equal(full, expected)
    # exactly 0.5 counts as inside
    half = utils.unmold_mask(np.full((3, 3), 0.5), (0, 0, 3, 3), (6, 6))
    np.testing.assert_array_equal(half, np.pad(np.ones((3, 3), bool), [(0, 3), (0, 3)]))
    # box partly outside the image is clipped, empty box gives an empty mask
    clipped = utils.unmold_mask(np.ones((4, 4)), (-2, 12, 6, 20), (16, 16))
    assert clipped.sum() == 6 * 4 and clipped[:6, 12:].all()
    assert not utils.unmold_mask(np.ones((4, 4)), (5, 5, 5, 9), (16, 16)).any()


@FAST
@given(box_strategy(40).map(lambda b: (b[0] - 20, b[1] - 20, b[2] - 20, b[3] - 20)), st.integers(2, 28))
def test_unmold_mask_stays_inside_the_image_and_the_box(box, side):
    y1, x1, y2, x2 = box
    full = utils.unmold_mask(np.ones((side, side), np.float32), box, (32, 48, 3))
    assert full.shape == (32, 48) and full.dtype == bool
    expected = np.zeros((32, 48), bool)
    expected[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    np.testing.assert_array_equal(full, expected)


def test_resize_wrapper_accepts_bool():
    m = np.zeros((4, 4), bool)
    m[:, :2] = True
    out = utils.resize(m, (8, 8))
    # interpolated as float (scikit-image refuses bool with order 1); "constant" mode blends the border
    assert out.dtype.kind == "f" and out[1:-1, 1:3].min() > 0.99 and out[:, 5:].max() < 0.01
    assert 0.5 < out[0, 0] < 1


# --------------------------------------------------------------------------- anchors


def test_generate_anchors_hand_case():
    anchors = utils.generate_anchors(8, [0.5, 1, 2], (2, 3), 4, 1)
    assert anchors.shape == (2 * 3 * 3, 4)
    s2 = math.sqrt(2)
    # first position (0, 0): ratios innermost
    np.testing.assert_allclose(
        anchors[:3],
        [[-4 * s2, -2 * s2, 4 * s2, 2 * s2], [-4, -4, 4, 4], [-2 * s2, -4 * s2, 2 * s2, 4 * s2]],
    )
    # position index 1 is (row 0, col 1): centre (0, 4); index 3 is (row 1, col 0): centre (4, 0)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centres[3:6], [[0, 4]] * 3)
    np.testing.assert_allclose(centres[9:12], [[4, 0]] * 3)
    assert len(utils.generate_anchors(8, [1], (4, 4), 4, 2)) == 4


def test_generate_pyramid_anchors_count_for_1024():
    strides = [4, 8, 16, 32, 64]
    shapes = [(math.ceil(1024 / s), math.ceil(1024 / s)) for s in strides]
    anchors = utils.generate_pyramid_anchors((32, 64, 128, 256, 512), [0.5, 1, 2], shapes, strides, 1)
    assert anchors.shape == (3 * (256**2 + 128**2 + 64**2 + 32**2 + 16**2), 4) == (261888, 4)
    # level boundaries: the first anchor of level 2 is the 1:2 anchor of scale 64 at (0, 0)
    first_l2 = anchors[3 * 256**2]
    np.testing.assert_allclose(
        first_l2, [-32 * math.sqrt(2), -16 * math.sqrt(2), 32 * math.sqrt(2), 16 * math.sqrt(2)]
    )
    with pytest.raises(ValueError, match="one scale"):
        utils.generate_pyramid_anchors((32, 64), [1], shapes, strides, 1)


@FAST
@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 3),
    st.sampled_from([4, 8, 16]),
    st.lists(st.sampled_from([0.25, 0.5, 1, 2, 3]), min_size=1, max_size=3, unique=True),
    st.integers(4, 256),
)
def test_generate_anchors_count_sizes_and_centres(rows, cols, anchor_stride, stride, ratios, scale):
    anchors = utils.generate_anchors(scale, ratios, (rows, cols), stride, anchor_stride)
    positions = math.ceil(rows / anchor_stride) * math.ceil(cols / anchor_stride)
    assert anchors.shape == (positions * len(ratios), 4)
    heights = anchors[:, 2] - anchors[:, 0]
    widths = anchors[:, 3] - anchors[:, 1]
    np.testing.assert_allclose(heights * widths, scale**2)
    np.testing.assert_allclose(widths / heights, np.tile(ratios, positions))
    cells = (anchors[:, :2] + anchors[:, 2:]) / 2 / (stride * anchor_stride)
    np.testing.assert_allclose(cells, np.round(cells), atol=1e-9)
    np.testing.assert_allclose(cells.min(axis=0), [0, 0], atol=1e-9)
    np.testing.assert_allclose(cells.max(axis=0), [(rows - 1) // anchor_stride, (cols - 1) // anchor_stride])


@FAST
@given(st.lists(box_strategy(), min_size=1, max_size=6))
def test_zero_deltas_are_the_identity(boxes):
    boxes = np.array(boxes, np.float32)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, np.zeros_like(boxes)), boxes, atol=1e-4)
    np.testing.assert_allclose(utils.box_refinement(boxes, boxes), 0, atol=1e-6)


# --------------------------------------------------------------------------- boxes normalization


def test_norm_denorm_hand_case():
    boxes = np.array([[0, 0, 10, 20], [5, 5, 11, 21]])
    n = utils.norm_boxes(boxes, (11, 21))
    assert n.dtype == np.float32
    np.testing.assert_allclose(n, [[0, 0, 0.9, 0.95], [0.5, 0.25, 1.0, 1.0]], rtol=1e-6)
    d = utils.denorm_boxes(n, (11, 21))
    assert d.dtype == np.int32
    np.testing.assert_array_equal(d, boxes)


@FAST
@given(st.integers(2, 1500), st.integers(2, 1500), st.data())
def test_denorm_inverts_norm_on_integer_boxes(h, w, data):
    ys = data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2))
    xs = data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2))
    boxes = np.array([[min(ys), min(xs), max(ys), max(xs)]])
    np.testing.assert_array_equal(utils.denorm_boxes(utils.norm_boxes(boxes, (h, w)), (h, w)), boxes)


def test_trim_zeros():
    x = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 1, 0]])
    with pytest.raises(ValueError, match="2-D"):
        utils.trim_zeros(np.zeros(4))


# --------------------------------------------------------------------------- metrics


def _instances(boxes, shape=(32, 32)):
    masks = np.zeros(shape + (len(boxes),), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    return np.array(boxes, dtype=np.int32).reshape(-1, 4), masks


def test_compute_ap_perfect_and_wrong():
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10), (15, 15, 30, 30)])
    gt_ids = np.array([1, 2])
    ap, precisions, recalls, overlaps = utils.compute_ap(
        gt_boxes, gt_ids, gt_masks, gt_boxes, gt_ids, np.array([0.9, 0.8]), gt_masks
    )
    assert ap == pytest.approx(1.0)
    np.testing.assert_allclose(recalls, [0, 0.5, 1, 1])
    np.testing.assert_allclose(precisions, [1, 1, 1, 0])
    np.testing.assert_allclose(overlaps, np.eye(2))
    # wrong class on the higher-scoring prediction: precision 0 at rank 1, 1/2 at rank 2 -> AP = 0.5 * 0.5
    ap_wrong = utils.compute_ap(
        gt_boxes, gt_ids, gt_masks, gt_boxes, np.array([2, 2]), np.array([0.9, 0.8]), gt_masks
    )[0]
    assert ap_wrong == pytest.approx(0.25)
    # no predictions -> AP 0; ap_range of perfect predictions is 1
    empty_boxes, empty_masks = _instances([])
    assert (
        utils.compute_ap(gt_boxes, gt_ids, gt_masks, empty_boxes, np.zeros(0), np.zeros(0), empty_masks)[0]
        == 0.0
    )
    scores = np.array([0.9, 0.8])
    ap_range = utils.compute_ap_range(gt_boxes, gt_ids, gt_masks, gt_boxes, gt_ids, scores, gt_masks, None, 0)
    assert ap_range == pytest.approx(1.0)


def test_compute_matches_orders_by_score_and_trims_padding():
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10), (15, 15, 30, 30)])
    gt_boxes = np.concatenate([gt_boxes, np.zeros((1, 4), np.int32)])  # padding row
    pred_boxes, pred_masks = _instances([(15, 15, 30, 29), (0, 0, 10, 10), (0, 0, 9, 10)])
    gt_match, pred_match, overlaps = utils.compute_matches(
        gt_boxes,
        np.array([1, 1, 0]),
        gt_masks,
        pred_boxes,
        np.array([1, 1, 1]),
        np.array([0.5, 0.9, 0.7]),
        pred_masks,
    )
    # score order: pred 1 (-> gt 0), pred 2 (duplicate of gt 0, unmatched), pred 0 (-> gt 1)
    np.testing.assert_array_equal(pred_match, [0, -1, 1])
    np.testing.assert_array_equal(gt_match, [0, 2])
    assert overlaps.shape == (3, 2)
    np.testing.assert_allclose(overlaps[2, 1], 15 * 14 / 225)
    # score_threshold leaves low-scoring predictions unmatched
    _, pred_match, _ = utils.compute_matches(
        gt_boxes,
        np.array([1, 1, 0]),
        gt_masks,
        pred_boxes,
        np.array([1, 1, 1]),
        np.array([0.5, 0.9, 0.7]),
        pred_masks,
        score_threshold=0.6,
    )
    np.testing.assert_array_equal(pred_match, [0, -1, -1])


def test_compute_ap_range_prints(capsys):
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10)])
    pred_boxes, pred_masks = _instances([(0, 0, 10, 8)])  # IoU 0.8
    ap = utils.compute_ap_range(
        gt_boxes, np.array([1]), gt_masks, pred_boxes, np.array([1]), np.array([0.9]), pred_masks
    )
    # matched for thresholds 0.50..0.80 (7 of 10)
    assert ap == pytest.approx(0.7)
    out = capsys.readouterr().out
    assert "AP @0.50" in out and "AP @0.50-0.95" in out


def test_compute_recall():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [21, 21, 30, 30], [60, 60, 70, 70]])
    recall, positive_ids = utils.compute_recall(pred, gt, 0.7)
    assert recall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(positive_ids, [0, 1, 2])
    recall, positive_ids = utils.compute_recall(np.zeros((0, 4)), gt, 0.5)
    assert recall == 0.0 and positive_ids.size == 0
