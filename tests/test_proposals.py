"""ProposalLayer: top-k, delta decoding, clipping, NMS and padding vs a numpy reference."""

import keras
import numpy as np
import pytest
from tiny_configs import Tiny64Config

from mrcnn import utils
from mrcnn.proposals import ProposalLayer

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


class SmallConfig(Tiny64Config):
    NAME = "proposals"
    PRE_NMS_LIMIT = 60


def reference_proposals(probs, deltas, anchors, count, threshold, pre_nms_limit):
    """Matterport's proposal steps for one image, in numpy."""
    scores = probs[:, 1]
    order = np.argsort(-scores, kind="stable")[: min(pre_nms_limit, len(scores))]
    boxes = utils.apply_box_deltas(anchors[order], deltas[order] * STD)
    boxes = np.clip(boxes, 0.0, 1.0)
    keep = utils.non_max_suppression(boxes, scores[order], threshold)[:count]
    out = np.zeros((count, 4), np.float32)
    out[: len(keep)] = boxes[keep]
    return out


def random_inputs(rng, batch, num_anchors):
    centers = rng.uniform(-0.05, 1.05, (batch, num_anchors, 2))
    sizes = rng.uniform(0.05, 0.4, (batch, num_anchors, 2))
    anchors = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1).astype(np.float32)
    fg = rng.uniform(size=(batch, num_anchors))
    probs = np.stack([1 - fg, fg], axis=-1).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, num_anchors, 4)).astype(np.float32)
    return probs, deltas, anchors


def test_matches_numpy_reference_per_image():
    rng = np.random.default_rng(1)
    probs, deltas, anchors = random_inputs(rng, batch=2, num_anchors=200)
    # PRE_NMS_LIMIT keeps 60 of 200 anchors; NMS then keeps 56 and 57 of them: the tail is padding.
    layer = ProposalLayer(proposal_count=58, nms_threshold=0.5, config=SmallConfig())
    out = np.asarray(layer([probs, deltas, anchors]))
    assert out.shape == (2, 58, 4)
    for i in range(2):
        expected = reference_proposals(probs[i], deltas[i], anchors[i], 58, 0.5, 60)
        np.testing.assert_allclose(out[i], expected, atol=1e-6)
    assert np.all(out[0, 56:] == 0) and np.all(out[1, 57:] == 0) and np.all(out[:, :56].any(axis=-1))
    # The two images differ, so the batch was not mixed up.
    assert not np.allclose(out[0], out[1])


def test_hand_computed_nms_deltas_clipping_and_padding():
    anchors = np.array(
        [
            [
                [0.1, 0.1, 0.3, 0.3],  # duplicate of the next anchor, lower score
                [0.1, 0.1, 0.3, 0.3],
                [0.5, 0.5, 0.7, 0.7],  # shifted down by dy = 1 (x 0.1 std x 0.2 height)
                [0.9, 0.9, 1.2, 1.1],
            ]
        ],  # sticks out of the image: clipped
        np.float32,
    )
    fg = np.array([[0.6, 0.9, 0.8, 0.7]], np.float32)
    probs = np.stack([1 - fg, fg], axis=-1)
    deltas = np.zeros((1, 4, 4), np.float32)
    deltas[0, 2, 0] = 1.0
    layer = ProposalLayer(6, 0.7, pre_nms_limit=100, rpn_bbox_std_dev=STD)
    out = np.asarray(layer([probs, deltas, anchors]))[0]
    expected = np.array(
        [
            [0.1, 0.1, 0.3, 0.3],
            [0.52, 0.5, 0.72, 0.7],
            [0.9, 0.9, 1.0, 1.0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ],
        np.float32,
    )
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_pre_nms_limit_drops_low_scores_before_nms():
    anchors = np.array([[[0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9]]], np.float32)
    fg = np.array([[0.2, 0.9, 0.5]], np.float32)
    probs = np.stack([1 - fg, fg], axis=-1)
    layer = ProposalLayer(3, 0.7, pre_nms_limit=2, rpn_bbox_std_dev=STD)
    out = np.asarray(layer([probs, np.zeros((1, 3, 4), np.float32), anchors]))[0]
    np.testing.assert_allclose(out, [[0.4, 0.4, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9], [0, 0, 0, 0]], atol=1e-7)


def test_symbolic_output_shape_is_static():
    probs = keras.Input((None, 2))
    deltas = keras.Input((None, 4))
    anchors = keras.Input((None, 4))
    rois = ProposalLayer(proposal_count=25, nms_threshold=0.7, config=SmallConfig(), name="ROI")(
        [probs, deltas, anchors]
    )
    assert tuple(rois.shape) == (None, 25, 4)
    model = keras.Model([probs, deltas, anchors], rois)
    rng = np.random.default_rng(2)
    out = model.predict(list(random_inputs(rng, batch=3, num_anchors=80)), verbose=0)
    assert out.shape == (3, 25, 4)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_get_config_round_trip_without_config():
    layer = ProposalLayer(proposal_count=12, nms_threshold=0.6, config=SmallConfig(), name="ROI")
    clone = ProposalLayer.from_config(layer.get_config())
    assert clone.name == "ROI"
    assert (clone.proposal_count, clone.nms_threshold, clone.pre_nms_limit) == (12, 0.6, 60)
    np.testing.assert_allclose(clone.rpn_bbox_std_dev, STD)
    rng = np.random.default_rng(3)
    inputs = list(random_inputs(rng, batch=2, num_anchors=90))
    np.testing.assert_array_equal(np.asarray(layer(inputs)), np.asarray(clone(inputs)))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="config"):
        ProposalLayer(10, 0.7)
    with pytest.raises(ValueError, match="nms_threshold"):
        ProposalLayer(10, 1.5, config=SmallConfig())
    with pytest.raises(ValueError, match="3 inputs"):
        ProposalLayer(10, 0.7, config=SmallConfig())([keras.Input((None, 2)), keras.Input((None, 4))])
