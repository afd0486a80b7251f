"""PyramidROIAlign: level assignment, per-box pooling from the right level, input order, gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.roi_align import PyramidROIAlign, roi_pyramid_levels

META_SIZE = 12 + 3
IMAGE_SIDE = 1024


def make_meta(batch, side=IMAGE_SIDE):
    meta = np.zeros((batch, META_SIZE), np.float32)
    meta[:, 4:7] = [side, side, 3]
    meta[:, 7:11] = [0, 0, side, side]
    return meta


def square(center_y, center_x, side_px, image_side=IMAGE_SIDE):
    half = side_px / image_side / 2
    return [center_y - half, center_x - half, center_y + half, center_x + half]


def feature_maps(rng, batch, channels=3):
    """P2..P5 of a 64 px image (strides 4..32), random so each level is distinguishable."""
    return [rng.normal(size=(batch, 64 // s, 64 // s, channels)).astype(np.float32) for s in (4, 8, 16, 32)]


def test_levels_follow_the_fpn_formula():
    # 224 px is the canonical size of level 4; each doubling / halving moves one level.
    sides = [224, 112, 448, 56, 160, 317, 28, 1024]
    boxes = np.array([square(0.5, 0.5, s) for s in sides] + [[0, 0, 0, 0]], np.float32)
    levels = roi_pyramid_levels(tf.constant(boxes), tf.constant([IMAGE_SIDE, IMAGE_SIDE, 3]))
    # 160: log2(160/224) = -0.49 -> 4; 317: +0.50 -> 5; 28 and 1024 are clipped; empty box -> 2.
    np.testing.assert_array_equal(levels.numpy(), [4, 3, 5, 2, 4, 5, 2, 5, 2])


def test_non_finite_boxes_still_get_exactly_one_level():
    # A diverged network can hand NaN or infinite boxes to RoIAlign; each must land on one level, or
    # the layer's permutation back to input order fails ("19 is not between 0 and 19"), and the layer
    # pools them as empty boxes instead of failing in crop_and_resize.
    boxes = np.array(
        [[np.nan] * 4, [np.nan, 0, 0.5, 0.5], [0, 0, np.inf, np.inf], [0, 0, -np.inf, 0.5]], np.float32
    )
    levels = roi_pyramid_levels(tf.constant(boxes), tf.constant([IMAGE_SIDE, IMAGE_SIDE, 3])).numpy()
    np.testing.assert_array_equal(levels, [4, 4, 5, 2])
    feature_maps = [tf.random.normal([1, IMAGE_SIDE // s, IMAGE_SIDE // s, 2]) for s in (4, 8, 16, 32)]
    meta = np.zeros([1, 16], np.float32)
    meta[0, 4:7] = [IMAGE_SIDE, IMAGE_SIDE, 3]
    pooled = PyramidROIAlign([3, 3])([tf.constant(boxes[np.newaxis]), tf.constant(meta)] + feature_maps)
    assert pooled.shape == (1, 4, 3, 3, 2)
    corner = feature_maps[0][0, 0, 0].numpy()  # the all-NaN box becomes empty: P2's corner pixel
    np.testing.assert_allclose(pooled[0, 0].numpy(), np.broadcast_to(corner, (3, 3, 2)), rtol=1e-5)


def test_level_uses_image_area_from_meta():
    box = tf.constant([square(0.5, 0.5, 224)], tf.float32)  # 0.219 of the side
    assert roi_pyramid_levels(box, tf.constant([1024, 1024, 3])).numpy()[0] == 4
    assert roi_pyramid_levels(box, tf.constant([512, 512, 3])).numpy()[0] == 3


def test_each_box_pooled_from_its_level_in_input_order():
    rng = np.random.default_rng(0)
    sides_and_levels = [(60, 2), (112, 3), (224, 4), (460, 5)]
    order = [[2, 0, 3, 1, 0], [1, 3, 3, 2, 0]]  # indices into sides_and_levels, per image
    boxes = np.array(
        [
            [square(rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), sides_and_levels[k][0]) for k in row]
            for row in order
        ],
        np.float32,
    )
    maps = feature_maps(rng, batch=2)
    out = np.asarray(PyramidROIAlign((5, 4))([boxes, make_meta(2)] + maps))
    assert out.shape == (2, 5, 5, 4, 3)
    for b in range(2):
        for n, k in enumerate(order[b]):
            level = sides_and_levels[k][1]
            expected = tf.image.crop_and_resize(maps[level - 2][b : b + 1], boxes[b, n][None], [0], (5, 4))
            np.testing.assert_allclose(out[b, n], expected.numpy()[0], atol=1e-6, err_msg=f"box {b}, {n}")


def test_bilinear_samples_hand_computed():
    # Feature value = row index on every level; a full-map box sampled 3 x 3 reads rows 0, (h-1)/2, h-1.
    maps = [
        np.broadcast_to(np.arange(h, dtype=np.float32)[None, :, None, None], (1, h, h, 1)).copy()
        for h in (16, 8, 4, 2)
    ]
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.05, 0.05]]], np.float32)
    out = np.asarray(PyramidROIAlign((3, 3))([boxes, make_meta(1, side=64)] + maps))
    # The full box is 64 px in a 64 px image: log2(64 / 224 * 64 / 64) -> 4 - 2 = level 2 (16 rows).
    np.testing.assert_allclose(out[0, 0, :, :, 0], [[0, 0, 0], [7.5, 7.5, 7.5], [15, 15, 15]], atol=1e-5)
    np.testing.assert_allclose(
        out[0, 1, :, :, 0], [[0, 0, 0], [0.375, 0.375, 0.375], [0.75, 0.75, 0.75]], atol=1e-5
    )


def test_symbolic_shape_and_gradient_reaches_feature_maps():
    boxes_in = keras.Input((6, 4))
    meta_in = keras.Input((META_SIZE,))
    map_inputs = [keras.Input((64 // s, 64 // s, 3)) for s in (4, 8, 16, 32)]
    pooled = PyramidROIAlign((7, 7), name="roi_align_classifier")([boxes_in, meta_in] + map_inputs)
    assert tuple(pooled.shape) == (None, 6, 7, 7, 3)

    rng = np.random.default_rng(1)
    boxes = tf.constant([[square(0.5, 0.5, 60)] * 6], tf.float32)  # all on level 2
    maps = [tf.constant(m) for m in feature_maps(rng, batch=1)]
    with tf.GradientTape() as tape:
        tape.watch(maps)
        total = tf.reduce_sum(PyramidROIAlign((7, 7))([boxes, make_meta(1)] + maps))
    grads = tape.gradient(total, maps)
    assert float(tf.reduce_sum(tf.abs(grads[0]))) > 0
    assert all(g is None or float(tf.reduce_sum(tf.abs(g))) == 0 for g in grads[1:])


def test_get_config_round_trip_and_errors():
    layer = PyramidROIAlign([14, 14], name="roi_align_mask")
    clone = PyramidROIAlign.from_config(layer.get_config())
    assert clone.name == "roi_align_mask" and clone.pool_shape == (14, 14)
    with pytest.raises(ValueError, match="pool_shape"):
        PyramidROIAlign((7,))
    with pytest.raises(ValueError, match="6 inputs"):
        PyramidROIAlign((7, 7))([keras.Input((6, 4)), keras.Input((META_SIZE,))])
