"""Tests for mrcnn.anchors: numpy anchors, the in-graph twin held equal to them, the cache and the layer."""

import math

import numpy as np
import pytest
from box_strategies import FAST
from hypothesis import given
from hypothesis import strategies as st

import mrcnn.anchors as anchor_ops
from mrcnn.boxes import norm_boxes
from mrcnn.config import Config


def test_generate_anchors_hand_case():
    anchors = anchor_ops.generate_anchors(8, [0.5, 1, 2], (2, 3), 4, 1)
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
    assert len(anchor_ops.generate_anchors(8, [1], (4, 4), 4, 2)) == 4


def test_generate_pyramid_anchors_count_for_1024():
    strides = [4, 8, 16, 32, 64]
    shapes = [(math.ceil(1024 / s), math.ceil(1024 / s)) for s in strides]
    anchors = anchor_ops.generate_pyramid_anchors((32, 64, 128, 256, 512), [0.5, 1, 2], shapes, strides, 1)
    assert anchors.shape == (3 * (256**2 + 128**2 + 64**2 + 32**2 + 16**2), 4) == (261888, 4)
    # level boundaries: the first anchor of level 2 is the 1:2 anchor of scale 64 at (0, 0)
    first_l2 = anchors[3 * 256**2]
    np.testing.assert_allclose(
        first_l2, [-32 * math.sqrt(2), -16 * math.sqrt(2), 32 * math.sqrt(2), 16 * math.sqrt(2)]
    )
    with pytest.raises(ValueError, match="one scale"):
        anchor_ops.generate_pyramid_anchors((32, 64), [1], shapes, strides, 1)


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
    anchors = anchor_ops.generate_anchors(scale, ratios, (rows, cols), stride, anchor_stride)
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


class AnchorConfig(Config):
    NAME = "anchors_test"
    BACKBONE = "resnet50"
    IMAGE_RESIZE_MODE = "pad64"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 256
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2, 3]


@pytest.mark.parametrize("anchor_stride", [1, 2])
@pytest.mark.parametrize("shape", [(64, 64), (128, 192), (256, 64), (90, 60)])
def test_anchors_graph_equals_numpy_anchors(shape, anchor_stride):
    config = AnchorConfig()
    config.RPN_ANCHOR_STRIDE = anchor_stride
    pixels, normalized = anchor_ops.config_anchors(config, shape + (3,))
    np.testing.assert_array_equal(anchor_ops.anchors_graph(shape[0], shape[1], config).numpy(), normalized)
    np.testing.assert_array_equal(normalized, norm_boxes(pixels, shape))


def test_config_anchors_are_cached_read_only_and_follow_the_backbone_shapes():
    from mrcnn.backbone import compute_backbone_shapes

    config = AnchorConfig()
    pixels, normalized = anchor_ops.config_anchors(config, (128, 192, 3))
    expected = anchor_ops.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES,
        config.RPN_ANCHOR_RATIOS,
        compute_backbone_shapes(config, (128, 192)),
        config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE,
    )
    np.testing.assert_array_equal(pixels, expected)
    assert pixels.dtype == np.float64 and normalized.dtype == np.float32
    again = anchor_ops.config_anchors(config, (128, 192))
    assert again[0] is pixels and again[1] is normalized
    with pytest.raises(ValueError):
        normalized[0, 0] = 1.0


def test_constant_anchors_layer_broadcasts_the_cached_anchors():
    from mrcnn.rpn import ConstantAnchors, anchor_layer

    config = AnchorConfig()
    config.IMAGE_SHAPE = np.array([128, 128, 3])
    layer = anchor_layer(config)
    out = np.asarray(layer(np.zeros((2, 128, 128, 3), np.float32)))
    _, normalized = anchor_ops.config_anchors(config, config.IMAGE_SHAPE)
    assert layer.name == "anchors" and out.shape == (2,) + normalized.shape
    np.testing.assert_array_equal(out[1], normalized)
    rebuilt = ConstantAnchors.from_config(layer.get_config())
    np.testing.assert_array_equal(rebuilt.anchors, normalized)
