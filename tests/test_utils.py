"""Tests for the mrcnn.utils facade (Matterport's names), batch_slice, resizing and mask molding.

Box geometry is tested in test_boxes.py, anchors in test_anchors.py, AP metrics in test_metrics.py."""

import random
import subprocess
import sys

import numpy as np
import pytest
from box_strategies import FAST, box_strategy
from hypothesis import given
from hypothesis import strategies as st

from mrcnn import utils


def test_import_does_not_load_tensorflow():
    code = "import sys, mrcnn.utils; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_coco_model_url():
    assert utils.COCO_MODEL_URL == (
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
    )


# Every name of Matterport's mrcnn.utils (docs: /work/shared/spec/matterport_api.md, section 3).
MATTERPORT_UTILS_NAMES = (
    "COCO_MODEL_URL extract_bboxes compute_iou compute_overlaps compute_overlaps_masks non_max_suppression "
    "apply_box_deltas box_refinement_graph box_refinement Dataset resize_image resize_mask minimize_mask "
    "expand_mask mold_mask unmold_mask generate_anchors generate_pyramid_anchors trim_zeros compute_matches "
    "compute_ap compute_ap_range compute_recall batch_slice download_trained_weights norm_boxes denorm_boxes "
    "resize"
).split()


def test_facade_has_every_matterport_name():
    from mrcnn import anchors, boxes, datasets, download, graph_ops, metrics

    assert sorted(utils.__all__) == sorted(MATTERPORT_UTILS_NAMES)
    for name in MATTERPORT_UTILS_NAMES:
        assert getattr(utils, name) is not None, name
    assert utils.Dataset is datasets.base.Dataset
    assert utils.compute_overlaps is boxes.compute_overlaps
    assert utils.box_refinement_graph is boxes.box_refinement_graph
    assert utils.generate_pyramid_anchors is anchors.generate_pyramid_anchors
    assert utils.compute_ap is metrics.compute_ap
    assert utils.batch_slice is graph_ops.batch_slice
    assert utils.download_trained_weights is download.download_trained_weights


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
