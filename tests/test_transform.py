"""mrcnn.transform: each TensorFlow form equals its numpy form, and the image-meta table is the one layout.

The exported models run the TensorFlow forms and ``detect()`` the numpy ones, so every pair is compared
here on the same inputs: resize (bit for bit against scikit-image), molding with metas and windows,
box un-molding and mask pasting.
"""

import numpy as np
import pytest
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
        # utils.resize_image's resize and cast back to the input dtype.
        reference = np.clip(np.round(utils.resize(image, out, preserve_range=True)), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(resized, reference)


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
