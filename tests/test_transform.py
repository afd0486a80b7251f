"""mrcnn.transform: each TensorFlow form equals its numpy form, and the image-meta table is the one layout.

The exported models run the TensorFlow forms and ``detect()`` the numpy ones, so every pair is compared
here on the same inputs: resize (bit for bit against scikit-image), molding with metas and windows,
box un-molding and mask pasting.
"""

import random
import warnings

import numpy as np
import pytest
import scipy.ndimage
import skimage.transform
import tensorflow as tf

import mrcnn.model as modellib
from mrcnn import transform, utils
from mrcnn.config import Config
from mrcnn.transform import (
    compose_image_meta,
    compose_image_meta_graph,
    mold_image,
    mold_images_graph,
    parse_image_meta,
    parse_image_meta_graph,
    paste_masks,
    paste_masks_graph,
    resize_images_graph,
)
from mrcnn.transform.resizing import _tf_ops, resize_scale, scaled_size


class SquareConfig(Config):
    NAME = "transform_test"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128


class Pad64Config(SquareConfig):
    IMAGE_RESIZE_MODE = "pad64"


class NoResizeConfig(SquareConfig):
    IMAGE_RESIZE_MODE = "none"


def _image(rng, height, width):
    """Noise with a few flat rectangles, uint8 [height, width, 3]."""
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[y : y + rng.integers(4, height // 2), x : x + rng.integers(4, width // 2)] = rng.integers(
            0, 256, 3
        )
    return image


############################################################
#  Image metas: one table, numpy and TensorFlow
############################################################


def test_image_meta_layout_is_matterports():
    assert transform.FIXED_META_SIZE == 12
    assert SquareConfig().IMAGE_META_SIZE == 12 + 4 == transform.image_meta_size(4)
    meta = compose_image_meta(7, (30, 40, 3), (128, 128, 3), (10, 20, 70, 100), 1.5, [1, 0, 1, 1])
    np.testing.assert_array_equal(meta, [7, 30, 40, 3, 128, 128, 3, 10, 20, 70, 100, 1.5, 1, 0, 1, 1])
    parsed = parse_image_meta(meta[np.newaxis])
    assert parsed["window"].tolist() == [[10, 20, 70, 100]] and parsed["scale"].tolist() == [1.5]
    assert transform.meta_field(meta[np.newaxis], "active_class_ids").tolist() == [[1, 0, 1, 1]]


def test_image_meta_graph_forms_equal_numpy_forms():
    fields = (3, (64, 32, 3), (128, 128, 3), (0, 32, 128, 96), 2.0, [1, 0, 1, 0])
    meta = compose_image_meta(*fields)
    got = compose_image_meta_graph(*[tf.constant(np.asarray(f, np.float32)) for f in fields]).numpy()
    np.testing.assert_array_equal(got, meta.astype(np.float32))
    metas = np.stack([meta, meta * 0 + 1])
    parsed_graph = parse_image_meta_graph(tf.constant(metas))
    for name, value in parse_image_meta(metas).items():
        np.testing.assert_array_equal(parsed_graph[name].numpy().astype(value.dtype), value)


############################################################
#  Resizing
############################################################


@pytest.mark.parametrize(
    "shape, out",
    [
        ((64, 192), (43, 128)),
        ((90, 60), (96, 64)),
        ((77, 33), (128, 55)),
        ((300, 211), (128, 90)),
        ((5, 7), (16, 3)),
    ],
)
def test_resize_matches_skimage_bit_for_bit(shape, out):
    rng = np.random.default_rng(sum(shape + out))
    images = np.stack(
        [
            rng.integers(0, 256, shape + (3,), dtype=np.uint8),
            (rng.integers(0, 4, shape + (3,)) * 60 + 10).astype(np.uint8),
        ]
    )
    got = resize_images_graph(tf.constant(images), out[0], out[1]).numpy()
    for image, resized in zip(images, got):
        # utils.resize_image's (and Matterport's) resize, truncated back to the input dtype.
        reference = skimage.transform.resize(
            image, out, order=1, mode="constant", cval=0, clip=True, preserve_range=True, anti_aliasing=False
        ).astype(np.uint8)
        np.testing.assert_array_equal(resized, reference)


def _skimage_resize(image, size):
    """The resize call of Matterport's resize_image (scikit-image's resize through its utils.resize)."""
    return skimage.transform.resize(
        image, size, order=1, mode="constant", cval=0, clip=True, preserve_range=True, anti_aliasing=False
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize(
    "mode, shape, min_dim, max_dim, min_scale, expected_scale",
    [
        ("square", (480, 640), 800, 1024, 0, 1024 / 640),  # a photo into Matterport's default square
        ("square", (300, 200), 64, 128, 0, 128 / 300),  # scaled down to fit max_dim
        ("square", (40, 50), 64, 128, 0, 64 / 40),  # scaled up to min_dim
        ("pad64", (90, 150), 128, None, 0, 128 / 90),
        ("pad64", (70, 70), 64, None, 2.0, 2.0),  # min_scale wins over min_dim
        ("crop", (100, 130), 64, None, 1.5, 1.5),
        ("square", (128, 96), 64, 128, 0, 1),  # no resize needed: scale 1, only padding
        ("none", (77, 91), 64, 128, 0, 1),
    ],
)
def test_resize_image_is_matterports_resize_for_every_mode_and_dtype(
    dtype, mode, shape, min_dim, max_dim, min_scale, expected_scale
):
    """resize_image's pixels are scikit-image's resize truncated to the input dtype (Matterport's
    ``.astype(image.dtype)``), placed in the window; padding is zero; the crop is a window of the resized
    image."""
    rng = np.random.default_rng(sum(shape))
    if np.issubdtype(dtype, np.integer):
        high = min(np.iinfo(dtype).max, 4000)
        image = rng.integers(max(np.iinfo(dtype).min, -4000), high, shape + (3,)).astype(dtype)
    else:
        image = (rng.random(shape + (3,)) * 255).astype(dtype)
    state = random.getstate()
    resized, window, scale, padding, crop = utils.resize_image(
        image, min_dim=min_dim, max_dim=max_dim, min_scale=min_scale, mode=mode
    )
    assert resized.dtype == image.dtype
    assert scale == pytest.approx(expected_scale, rel=1e-12)
    if scale == 1:
        assert isinstance(scale, int)  # Matterport's scale is the int 1 when nothing is resized
        expected = image
    else:
        expected = _skimage_resize(image, (round(shape[0] * scale), round(shape[1] * scale))).astype(dtype)
    if mode == "crop":
        y, x, h, w = crop
        np.testing.assert_array_equal(resized, expected[y : y + h, x : x + w])
        random.setstate(state)  # Matterport's crop corner: random.randint over the resized image
        assert (y, x) == (random.randint(0, expected.shape[0] - h), random.randint(0, expected.shape[1] - w))
        return
    y1, x1, y2, x2 = window
    np.testing.assert_array_equal(resized[y1:y2, x1:x2], expected)
    assert not resized[:y1].any() and not resized[y2:].any()
    assert not resized[:, :x1].any() and not resized[:, x2:].any()
    assert padding == [(y1, resized.shape[0] - y2), (x1, resized.shape[1] - x2), (0, 0)]


def test_resize_image_truncates_where_rounding_would_differ():
    """The case of the issue: a 480x640 uint8 photo into the 1024 square. A third of the pixels differ
    between truncation and rounding, so the equality above is a real check of the cast."""
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    resized, window, *_ = utils.resize_image(image, min_dim=800, max_dim=1024, mode="square")
    y1, x1, y2, x2 = window
    interpolated = _skimage_resize(image, (y2 - y1, x2 - x1))
    np.testing.assert_array_equal(resized[y1:y2, x1:x2], np.floor(interpolated).astype(np.uint8))
    assert (np.round(interpolated).astype(np.uint8) != resized[y1:y2, x1:x2]).mean() > 0.25


@pytest.mark.parametrize("mode", ["square", "pad64", "crop"])
@pytest.mark.parametrize("height, width", [(90, 60), (50, 120), (1, 700), (128, 128), (700, 3), (40, 40)])
def test_resize_scale_and_size_same_rule_in_numpy_and_tensorflow(mode, height, width):
    args = (64, 128, 1.5 if height == 40 else 0, mode)
    scale = resize_scale(float(height), float(width), *args)
    size = scaled_size(float(height), float(width), scale)

    def traced_rule(dtype):  # traced, as in the exported graph
        ops = _tf_ops(dtype)

        @tf.function(input_signature=[tf.TensorSpec([], dtype)] * 2)
        def graph_rule(h, w):
            graph_scale = resize_scale(h, w, *args, ops)
            return (graph_scale, *scaled_size(h, w, graph_scale, ops))

        return graph_rule

    for dtype in (tf.float64, tf.float32):  # float32: the TFLite export's arithmetic
        graph_rule = traced_rule(dtype)
        graph_scale, *graph_size = graph_rule(
            tf.constant(float(height), dtype), tf.constant(float(width), dtype)
        )
        if dtype == tf.float64:
            assert float(graph_scale) == float(scale)
        else:
            assert float(graph_scale) == pytest.approx(float(scale), rel=1e-6)
        assert [float(s) for s in graph_size] == [float(s) for s in size] and min(size) >= 1


def test_crop_mode_draws_from_the_given_generator():
    image = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    first = utils.resize_image(image, min_dim=64, mode="crop", rng=np.random.default_rng(5))
    second = utils.resize_image(image, min_dim=64, mode="crop", rng=np.random.default_rng(5))
    assert first[4] == second[4] and first[0].shape == (64, 64, 3)
    np.testing.assert_array_equal(first[0], second[0])
    corners = {
        utils.resize_image(image, min_dim=64, mode="crop", rng=np.random.default_rng(s))[4] for s in range(8)
    }
    assert len(corners) > 1


############################################################
#  Molding
############################################################


@pytest.mark.parametrize("config_class", [SquareConfig, Pad64Config, NoResizeConfig])
@pytest.mark.parametrize("height, width", [(90, 60), (50, 120), (200, 150), (128, 128), (64, 192)])
def test_mold_images_graph_matches_mold_inputs(config_class, height, width):
    config = config_class()
    image = _image(np.random.default_rng(height * width), height, width)
    molded, window, scale, _, _ = utils.resize_image(
        image,
        min_dim=config.IMAGE_MIN_DIM,
        min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE,
    )
    meta = compose_image_meta(0, image.shape, molded.shape, window, scale, np.zeros([config.NUM_CLASSES]))
    got_molded, got_metas, got_window = mold_images_graph(tf.constant(np.stack([image, image])), config)
    np.testing.assert_array_equal(got_molded.numpy()[1], mold_image(molded, config))
    np.testing.assert_array_equal(got_metas.numpy(), np.stack([meta, meta]).astype(np.float32))
    assert tuple(got_window.numpy()) == tuple(window)
    # detect()'s numpy path gives the same three values.
    np_molded, np_metas, np_windows = transform.mold_inputs([image], config)
    np.testing.assert_array_equal(np_molded[0], got_molded.numpy()[0])
    np.testing.assert_array_equal(np_metas[0], got_metas.numpy()[0])
    assert tuple(np_windows[0]) == tuple(window)


@pytest.mark.parametrize("config_class", [SquareConfig, Pad64Config])
def test_float32_molding_stays_within_one_grey_level(config_class):
    """The TFLite export's float32 arithmetic: the same window and metas, pixels at most one level off
    and nearly all equal."""
    config = config_class()
    images = tf.constant(np.stack([_image(np.random.default_rng(3), 90, 60)] * 2))
    exact, exact_metas, exact_window = mold_images_graph(images, config)
    single, single_metas, single_window = mold_images_graph(images, config, tf.float32)
    difference = np.abs(single.numpy() - exact.numpy())
    assert difference.max() <= 1 and (difference == 0).mean() >= 0.99
    np.testing.assert_array_equal(single_metas.numpy(), exact_metas.numpy())
    np.testing.assert_array_equal(single_window.numpy(), exact_window.numpy())


############################################################
#  Un-molding
############################################################


@pytest.mark.parametrize(
    "original, molded, window",
    [
        ((90, 60), (128, 128), (0, 21, 128, 107)),
        ((50, 120), (128, 128), (37, 0, 90, 128)),
        ((64, 64), (64, 64), (0, 0, 64, 64)),
    ],
)
def test_unmold_boxes_graph_matches_unmold_boxes(original, molded, window):
    rng = np.random.default_rng(sum(original))
    corners = np.sort(rng.random((2, 20, 2, 2)), axis=2)
    boxes = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1).astype(np.float32)  # y1, x1, y2, x2
    got = transform.unmold_boxes_graph(
        tf.constant(boxes), tf.constant(window), tf.constant(molded), tf.constant(original)
    ).numpy()
    single = transform.unmold_boxes_graph(
        tf.constant(boxes), tf.constant(window), tf.constant(molded), tf.constant(original), tf.float32
    ).numpy()
    for b in range(2):
        expected = transform.unmold_boxes(boxes[b], window, molded, original)
        np.testing.assert_array_equal(got[b], expected)
        assert np.abs(single[b] - expected).max() <= 1  # the TFLite export's float32 arithmetic


def test_paste_masks_graph_matches_paste_masks():
    rng = np.random.default_rng(7)
    height, width = 40, 52
    masks = rng.random((2, 5, 28, 28)).astype(np.float32)
    # Inside, across every border, one pixel, empty (y2 == y1) and the zero padding row.
    boxes = np.array(
        [
            [[3, 4, 30, 20], [-5, 40, 12, 70], [35, -3, 50, 10], [10, 10, 11, 11], [0, 0, 0, 0]],
            [[0, 0, 40, 52], [20, 5, 20, 30], [1, 2, 39, 50], [-10, -10, 60, 70], [5, 6, 9, 30]],
        ]
    )
    got = paste_masks_graph(tf.constant(masks), tf.constant(boxes, tf.float32), height, width).numpy()
    single = paste_masks_graph(
        tf.constant(masks), tf.constant(boxes, tf.float32), height, width, dtype=tf.float32
    ).numpy()
    assert (single == got).mean() > 0.999  # the TFLite export's float32 arithmetic
    assert got.dtype == np.uint8 and got.shape == (2, 5, height, width)
    for b in range(2):
        expected = modellib.paste_masks(masks[b], boxes[b], (height, width)).transpose(2, 0, 1)
        assert (got[b].astype(bool) == expected).mean() > 0.999
    assert got[0, 4].sum() == 0 and got[1, 1].sum() == 0  # zero and empty boxes paste nothing
    assert got[0, 3].sum() <= 1


def _random_boxes(rng, count, height, width):
    """Boxes of 60..260 px per side, some crossing the image border."""
    sides = rng.integers(60, 261, (count, 2))
    corners = np.stack([rng.integers(-40, height - 40, count), rng.integers(-40, width - 40, count)], 1)
    return np.concatenate([corners, corners + sides], axis=1)


def _test_masks(rng, count):
    """Mask-head-like outputs: noise, full-box masks (every value >= 0.5), values near the threshold and
    smooth blobs."""
    blobs = scipy.ndimage.gaussian_filter(rng.random((count, 28, 28)), (0, 3, 3)) * 3 - 1
    return (
        np.concatenate(
            [
                rng.random((count, 28, 28)),
                rng.uniform(0.5, 1.0, (count, 28, 28)),
                rng.normal(0.5, 0.02, (count, 28, 28)),
                blobs,
            ]
        )
        .clip(0, 1)
        .astype(np.float32)
    )


def test_paste_masks_equals_unmold_mask_for_every_mask():
    rng = np.random.default_rng(22)
    height, width = 300, 360
    masks = _test_masks(rng, 10)
    boxes = _random_boxes(rng, len(masks), height, width)
    pasted = paste_masks(masks, boxes, (height, width))
    for i in range(len(masks)):
        np.testing.assert_array_equal(pasted[:, :, i], utils.unmold_mask(masks[i], boxes[i], (height, width)))


def test_full_box_masks_fill_their_whole_box():
    """A mask whose 28x28 values are all >= 0.5 fills its box to the edges (scikit-image clips the
    interpolation towards the zero padding up to the mask's minimum), in numpy and TensorFlow."""
    rng = np.random.default_rng(5)
    height, width = 300, 360
    masks = rng.uniform(0.5, 1.0, (10, 28, 28)).astype(np.float32)
    boxes = np.abs(_random_boxes(rng, 10, height, width))
    pasted = paste_masks(masks, boxes, (height, width))
    graph = paste_masks_graph(tf.constant(masks[None]), tf.constant(boxes[None], tf.float32), height, width)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        expected = np.zeros((height, width), bool)
        expected[y1:y2, x1:x2] = True
        np.testing.assert_array_equal(pasted[:, :, i], expected)
        np.testing.assert_array_equal(graph.numpy()[0, i].astype(bool), expected)


def test_paste_masks_graph_matches_paste_masks_on_mask_head_outputs():
    rng = np.random.default_rng(23)
    height, width = 300, 360
    masks = _test_masks(rng, 4)
    boxes = _random_boxes(rng, len(masks), height, width)
    graph = paste_masks_graph(tf.constant(masks[None]), tf.constant(boxes[None], tf.float32), height, width)
    expected = paste_masks(masks, boxes, (height, width)).transpose(2, 0, 1)
    # float32 products in the graph: pixels within rounding of the threshold may differ.
    assert (graph.numpy()[0].astype(bool) != expected).mean() < 1e-4


############################################################
#  Non-finite detections
############################################################


def test_unmold_detections_drops_non_finite_rows_with_one_warning(caplog):
    detections = np.zeros((6, 6), np.float32)
    detections[:4, :4] = [0.2, 0.2, 0.6, 0.7]
    detections[:4, 4:] = [[1, 0.9], [2, 0.8], [1, 0.7], [3, 0.6]]
    detections[1, 0] = np.nan
    detections[2, 3] = np.inf
    mrcnn_mask = np.ones((6, 28, 28, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" would fail here
        boxes, class_ids, scores, masks = transform.unmold_detections(
            detections, mrcnn_mask, (100, 120, 3), (128, 128, 3), np.array([10, 0, 117, 128])
        )
    assert class_ids.tolist() == [1, 3] and scores.tolist() == pytest.approx([0.9, 0.6])
    assert boxes.dtype == np.int32 and boxes.shape == (2, 4) and masks.shape == (100, 120, 2)
    assert np.array_equal(boxes[0], boxes[1])
    warnings_logged = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings_logged) == 1
    assert "2 of 4 detections" in warnings_logged[0].getMessage()
    assert "diverged" in warnings_logged[0].getMessage()


def test_denorm_boxes_refuses_non_finite_boxes():
    """Proposals of a diverged model (e.g. in inspect_model's cells) are never cast to integers."""
    proposals = np.array([[0.1, 0.1, 0.5, 0.5], [np.nan, 0.1, 0.5, 0.5], [0.1, -np.inf, 0.5, 0.5]])
    with pytest.raises(ValueError, match="2 non-finite .*diverged.*np.isfinite"):
        utils.denorm_boxes(proposals, (64, 64))
    np.testing.assert_array_equal(utils.denorm_boxes(proposals[:1], (64, 64)), [[6, 6, 32, 32]])


def test_utils_and_model_names_are_the_transform_functions():
    """Matterport's names point at the one implementation, not at copies."""
    assert utils.resize_image is transform.resize_image and utils.unmold_mask is transform.unmold_mask
    assert (
        modellib.mold_image is transform.mold_image
        and modellib.parse_image_meta is transform.parse_image_meta
    )
    assert modellib.parse_image_meta_graph is transform.parse_image_meta_graph
    assert modellib.paste_masks is transform.paste_masks


def test_data_modules_load_without_tensorflow():
    """The numpy halves (and the config) import no TensorFlow or Keras; the graph forms load it on use."""
    import subprocess
    import sys

    code = (
        "import sys; import mrcnn.transform, mrcnn.boxes, mrcnn.anchors, mrcnn.metrics, mrcnn.config, "
        "mrcnn.datasets; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
