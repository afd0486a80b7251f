"""Hand-computed values, empty cases and gradients of the five training losses."""

import math

import numpy as np
import pytest
import tensorflow as tf
from tiny_configs import TinyTargetsConfig

from mrcnn.losses import (
    mrcnn_bbox_loss_graph,
    mrcnn_class_loss_graph,
    mrcnn_mask_loss_graph,
    rpn_bbox_loss_graph,
    rpn_class_loss_graph,
    smooth_l1_loss,
)


class TinyConfig(TinyTargetsConfig):
    RPN_TRAIN_ANCHORS_PER_IMAGE = 3


def ce(logits, label):
    """Softmax cross-entropy by hand."""
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def smooth_l1(d):
    d = abs(d)
    return 0.5 * d * d if d < 1 else d - 0.5


def value_and_grad(fn, variable, *args):
    with tf.GradientTape() as tape:
        loss = fn(variable, *args)
    return loss, tape.gradient(loss, variable)


def assert_scalar(loss, expected):
    assert loss.dtype == tf.float32 and loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_smooth_l1_both_branches():
    loss = smooth_l1_loss(tf.constant([0.0, 0.0, 1.0, -2.0]), tf.constant([0.5, 3.0, 1.0, -1.2]))
    np.testing.assert_allclose(loss.numpy(), [0.125, 2.5, 0.0, 0.32], rtol=1e-6)


def test_rpn_class_loss_hand_computed_ignores_neutral():
    rpn_match = tf.constant([[[1], [-1], [0]]], tf.int32)
    logits = tf.constant([[[0.0, 0.0], [2.0, 0.0], [100.0, -100.0]]])
    expected = (math.log(2.0) + math.log(1.0 + math.exp(-2.0))) / 2
    assert_scalar(rpn_class_loss_graph(rpn_match, logits), expected)


def test_rpn_class_loss_all_neutral_is_zero_with_finite_grad():
    logits = tf.Variable(tf.ones([2, 3, 2]))
    loss, grad = value_and_grad(lambda v: rpn_class_loss_graph(tf.zeros([2, 3, 1], tf.int32), v), logits)
    assert_scalar(loss, 0.0)
    assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy()))


def rpn_bbox_case():
    # Image 0: positives at anchors 1 and 3 -> target rows 0 and 1. Image 1: positive at anchor 0 -> row 0.
    rpn_match = np.array([[0, 1, -1, 1], [1, 0, 0, -1]], np.int32)[..., None]
    target = np.zeros([2, 3, 4], np.float32)
    target[0, 0] = [0.1, 0.2, 0.3, 0.4]
    target[0, 1] = [1.0, 1.0, 1.0, 1.0]
    target[1, 0] = [-1.0, 0.0, 0.0, 0.0]
    target[1, 1] = [9.0, 9.0, 9.0, 9.0]  # beyond image 1's single positive: unused
    pred = np.full([2, 4, 4], 50.0, np.float32)  # neutral/negative anchors: huge error if used
    pred[0, 1] = [0.1, 0.2, 0.3, 0.4]  # exact -> 0
    pred[0, 3] = [1.5, 1.0, 4.0, 1.0]  # diffs 0.5, 0, 3, 0 -> 0.125 + 2.5
    pred[1, 0] = [0.0, 0.0, 0.0, 0.0]  # diff 1 -> 0.5
    expected = (0.125 + 2.5 + 0.5) / 12
    return rpn_match, target, pred, expected


def test_rpn_bbox_loss_packs_targets_per_image():
    rpn_match, target, pred, expected = rpn_bbox_case()
    assert_scalar(rpn_bbox_loss_graph(TinyConfig(), target, rpn_match, pred), expected)


def test_rpn_bbox_loss_unknown_batch_size():
    rpn_match, target, pred, expected = rpn_bbox_case()
    fn = tf.function(
        lambda t, m, p: rpn_bbox_loss_graph(None, t, m, p),
        input_signature=[
            tf.TensorSpec([None, None, 4]),
            tf.TensorSpec([None, None, 1], tf.int32),
            tf.TensorSpec([None, None, 4]),
        ],
    )
    assert_scalar(fn(target, rpn_match, pred), expected)


def test_rpn_bbox_loss_ignores_positives_beyond_target_rows():
    rpn_match = np.array([[1, 1]], np.int32)[..., None]
    target = np.zeros([1, 1, 4], np.float32)
    pred = np.array([[[0.0, 0.0, 0.0, 2.0], [50.0, 50.0, 50.0, 50.0]]], np.float32)
    assert_scalar(rpn_bbox_loss_graph(None, target, rpn_match, pred), 1.5 / 4)


def test_rpn_bbox_loss_no_positive_is_zero_with_finite_grad():
    pred = tf.Variable(tf.ones([2, 4, 4]))
    match = tf.constant([[[-1]] * 4, [[0]] * 4], tf.int32)
    loss, grad = value_and_grad(lambda v: rpn_bbox_loss_graph(None, tf.ones([2, 3, 4]), match, v), pred)
    assert_scalar(loss, 0.0)
    assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy()))


def class_case():
    # Image 0 activates classes {0, 1}, image 1 activates {0, 2}.
    active = np.array([[1, 1, 0], [1, 0, 1]], np.float32)
    logits = np.array(
        [
            [[0.0, 2.0, 1.0], [0.0, 1.0, 3.0]],  # predicted 1 (active), 2 (inactive in image 0)
            [[0.5, 0.0, 1.5], [2.0, 1.0, 0.0]],  # predicted 2 (active in image 1 only), 0 (active)
        ],
        np.float32,
    )
    targets = np.array([[1, 2], [2, 0]], np.int32)
    return targets, logits, active


def test_mrcnn_class_loss_uses_each_images_active_classes():
    targets, logits, active = class_case()
    expected = (ce(logits[0, 0], 1) + ce(logits[1, 0], 2) + ce(logits[1, 1], 0)) / 3
    assert_scalar(mrcnn_class_loss_graph(targets, logits, active), expected)
    # Matterport's row-0 lookup would drop image 1's first RoI (class 2 inactive in row 0).
    row0 = (ce(logits[0, 0], 1) + ce(logits[1, 1], 0)) / 2
    assert abs(expected - row0) > 1e-3


def test_mrcnn_class_loss_nothing_active_is_zero_with_finite_grad():
    targets, logits, active = class_case()
    variable = tf.Variable(logits)
    loss, grad = value_and_grad(lambda v: mrcnn_class_loss_graph(targets, v, np.zeros_like(active)), variable)
    assert_scalar(loss, 0.0)
    assert np.all(np.isfinite(grad.numpy()))


def bbox_case():
    class_ids = np.array([[2, 0, 1]], np.int32)
    target = np.array([[[1.0, 0.0, 0.0, 0.0], [7.0, 7.0, 7.0, 7.0], [0.0, 0.0, 0.0, 0.5]]], np.float32)
    pred = np.full([1, 3, 3, 4], 20.0, np.float32)  # wrong classes: huge error if used
    pred[0, 0, 2] = [0.0, 0.0, 0.0, 0.0]  # diffs 1, 0, 0, 0 -> 0.5
    pred[0, 2, 1] = [0.0, 0.0, 0.0, -2.5]  # diff 3 on the last -> 2.5
    return target, class_ids, pred, (0.5 + 2.5) / 8


def test_mrcnn_bbox_loss_true_class_positives_only():
    target, class_ids, pred, expected = bbox_case()
    assert_scalar(mrcnn_bbox_loss_graph(target, class_ids, pred), expected)


def test_mrcnn_bbox_loss_with_float_class_ids_and_grad():
    target, class_ids, pred, expected = bbox_case()
    variable = tf.Variable(pred)
    loss, grad = value_and_grad(
        lambda v: mrcnn_bbox_loss_graph(target, class_ids.astype(np.float32), v), variable
    )
    assert_scalar(loss, expected)
    grad = tf.convert_to_tensor(grad).numpy()
    assert np.all(np.isfinite(grad))
    # Only the two true-class slots of positive RoIs get gradient.
    assert np.count_nonzero(np.abs(grad).sum(axis=-1)) == 2


def mask_case():
    class_ids = np.array([[1, 0]], np.int32)
    target = np.zeros([1, 2, 2, 2], np.float32)
    target[0, 0] = [[1, 0], [0, 1]]
    target[0, 1] = [[1, 1], [1, 1]]
    pred = np.full([1, 2, 2, 2, 2], 0.01, np.float32)
    pred[0, 0, :, :, 1] = [[0.9, 0.2], [0.5, 0.6]]
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.5) + math.log(0.6)) / 4
    return target, class_ids, pred, expected


def test_mrcnn_mask_loss_hand_computed():
    target, class_ids, pred, expected = mask_case()
    assert_scalar(mrcnn_mask_loss_graph(target, class_ids, pred), expected)


def test_mrcnn_mask_loss_saturated_prediction_is_finite():
    target, class_ids, pred, _ = mask_case()
    pred[0, 0, 0, 1, 1] = 1.0  # target 0, prediction 1: clipped, not inf
    loss = mrcnn_mask_loss_graph(target, class_ids, pred).numpy()
    assert np.isfinite(loss) and loss > 3.0


@pytest.mark.parametrize(
    "fn, shape",
    [
        (lambda v, ids: mrcnn_bbox_loss_graph(tf.ones([1, 3, 4]), ids, v), [1, 3, 3, 4]),
        (lambda v, ids: mrcnn_mask_loss_graph(tf.ones([1, 3, 2, 2]), ids, v), [1, 3, 2, 2, 3]),
    ],
)
def test_head_losses_without_positives_are_zero_with_finite_grad(fn, shape):
    variable = tf.Variable(tf.fill(shape, 0.5))
    loss, grad = value_and_grad(fn, variable, tf.zeros([1, 3], tf.int32))
    assert_scalar(loss, 0.0)
    assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy()))


def test_losses_accept_float16_inputs():
    target, class_ids, pred, expected = mask_case()
    loss = mrcnn_mask_loss_graph(target, class_ids, tf.constant(pred, tf.float16))
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-3)
