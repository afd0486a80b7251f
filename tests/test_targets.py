"""DetectionTargetLayer / detection_targets_graph: sampling rules, targets, edge cases, Keras use."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_configs import TinyTargetsConfig as TinyConfig

from mrcnn.targets import DetectionTargetLayer, PositiveRoiPack, detection_targets_graph


class FullMaskConfig(TinyConfig):
    USE_MINI_MASK = False


T = 8
POSITIVE_QUOTA = 2  # int(8 * 0.33)
GT_A = [0.1, 0.1, 0.5, 0.5]
GT_B = [0.55, 0.55, 0.95, 0.95]
FAR = [
    [0.0, 0.6, 0.1, 0.7],
    [0.6, 0.0, 0.7, 0.1],
    [0.0, 0.8, 0.1, 0.9],
    [0.8, 0.0, 0.9, 0.1],
    [0.6, 0.2, 0.7, 0.3],
    [0.2, 0.6, 0.3, 0.7],
    [0.0, 0.0, 0.05, 0.05],
    [0.96, 0.96, 1.0, 1.0],
]


def iou(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = h * w
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def apply_deltas(roi, deltas):
    """Numpy inverse of the box refinement: deltas (already multiplied by the std dev) applied to roi."""
    h, w = roi[2] - roi[0], roi[3] - roi[1]
    cy, cx = roi[0] + 0.5 * h + deltas[0] * h, roi[1] + 0.5 * w + deltas[1] * w
    h, w = h * np.exp(deltas[2]), w * np.exp(deltas[3])
    return np.array([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w])


def batch(proposals, class_ids, boxes, masks):
    return [
        np.asarray(proposals, np.float32)[None],
        np.asarray(class_ids, np.int32)[None],
        np.asarray(boxes, np.float32)[None],
        np.asarray(masks)[None],
    ]


def mini_masks(count):
    """Box-shaped instances: the mini mask (the mask inside its box) is all ones."""
    return np.ones([14, 14, count], bool)


def run_layer(config, inputs):
    return [o.numpy() for o in DetectionTargetLayer(config)(inputs)]


def positives_near(box, count, step=0.01):
    return [[box[0] + i * step, box[1], box[2] + i * step, box[3]] for i in range(count)]


def standard_inputs():
    proposals = positives_near(GT_A, 4) + positives_near(GT_B, 3) + FAR + [[0, 0, 0, 0]] * 3
    return batch(proposals, [1, 2, 0], [GT_A, GT_B, [0, 0, 0, 0]], mini_masks(3))


def test_output_shapes_and_dtypes():
    rois, class_ids, bbox, masks = DetectionTargetLayer(TinyConfig())(standard_inputs())
    assert rois.shape == (1, T, 4) and rois.dtype == tf.float32
    assert class_ids.shape == (1, T) and class_ids.dtype == tf.int32
    assert bbox.shape == (1, T, 4) and bbox.dtype == tf.float32
    assert masks.shape == (1, T, 28, 28) and masks.dtype == tf.float32


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampling_counts_iou_and_box_targets(seed):
    tf.random.set_seed(seed)
    config = TinyConfig()
    inputs = standard_inputs()
    rois, class_ids, bbox, masks = (a[0] for a in run_layer(config, inputs))
    gts = {1: GT_A, 2: GT_B}
    positive = class_ids > 0
    assert positive.sum() == POSITIVE_QUOTA
    assert np.all(positive[:POSITIVE_QUOTA])  # positives come first
    # 2 positives -> int(2 / 0.33) - 2 = 4 negatives, then 2 padding rows.
    real = np.abs(rois).sum(axis=1) > 0
    assert real.sum() == 6 and np.all(real[:6])
    proposals = inputs[0][0]
    for i in np.flatnonzero(real):
        assert np.any(np.all(np.isclose(proposals, rois[i]), axis=1))
    for i in np.flatnonzero(positive):
        gt = gts[class_ids[i]]
        assert iou(rois[i], gt) >= 0.5
        recovered = apply_deltas(rois[i], bbox[i] * config.BBOX_STD_DEV)
        np.testing.assert_allclose(recovered, gt, atol=1e-5)
        assert masks[i].max() == 1.0
    for i in np.flatnonzero(real & ~positive):
        assert max(iou(rois[i], GT_A), iou(rois[i], GT_B)) < 0.5
        assert np.all(bbox[i] == 0) and np.all(masks[i] == 0)
    for output in (rois, class_ids, bbox, masks):
        assert np.all(output[~real] == 0)


def test_detection_targets_graph_single_image():
    config = TinyConfig()
    inputs = [a[0] for a in standard_inputs()]
    rois, class_ids, bbox, masks = detection_targets_graph(*inputs, config)
    assert rois.shape == (T, 4) and class_ids.shape == (T,) and masks.shape == (T, 28, 28)
    assert int(tf.reduce_sum(tf.cast(class_ids > 0, tf.int32))) == POSITIVE_QUOTA


@pytest.mark.parametrize("config_class", [TinyConfig, FullMaskConfig])
def test_mask_of_box_shaped_gt_is_ones_inside(config_class):
    config = config_class()
    # Pixel box rows/cols 8..31 of a 64 x 64 image; normalized as norm_boxes does (exclusive y2/x2).
    gt = np.array([8, 8, 31, 31]) / 63.0
    wider = [gt[0], gt[1], gt[2], gt[1] + 1.25 * (gt[3] - gt[1])]  # IoU 0.8, extends right of the box
    if config.USE_MINI_MASK:
        masks = mini_masks(1)
    else:
        masks = np.zeros([64, 64, 1], np.float32)
        masks[8:32, 8:32] = 1
    inputs = batch([gt, wider], [1], [gt], masks)
    rois, class_ids, _, target = (a[0] for a in run_layer(config, inputs))
    assert list(class_ids[:2]) == [1, 1]
    exact = int(np.argmin(np.abs(rois[:2] - gt).sum(axis=1)))
    assert np.all(target[exact] == 1)
    # The wider roi: the gt covers 1 / 1.25 of its width -> columns 0..21 of 28 are inside.
    shifted = target[1 - exact]
    assert np.all(shifted[:, :21] == 1) and np.all(shifted[:, 23:] == 0)
    assert set(np.unique(target)) <= {0.0, 1.0}


def test_crowd_boxes_make_no_positives_and_block_negatives():
    tf.random.set_seed(3)
    crowd = [0.55, 0.55, 0.95, 0.95]
    on_crowd = positives_near(crowd, 3) + [[0.6, 0.6, 0.7, 0.7]]  # the last has small IoU but touches it
    proposals = on_crowd + positives_near(GT_A, 3) + FAR
    inputs = batch(proposals, [1, -1], [GT_A, crowd], mini_masks(2))
    rois, class_ids, _, _ = (a[0] for a in run_layer(TinyConfig(), inputs))
    real = np.abs(rois).sum(axis=1) > 0
    assert np.all(class_ids[class_ids != 0] == 1)
    for roi in rois[real]:
        assert iou(roi, crowd) < 0.001
    # Crowd only: no positives; negatives still avoid the crowd.
    inputs = batch(proposals, [-1], [crowd], mini_masks(1))
    rois, class_ids, _, _ = (a[0] for a in run_layer(TinyConfig(), inputs))
    real = np.abs(rois).sum(axis=1) > 0
    assert np.all(class_ids == 0)
    assert real.sum() == T - POSITIVE_QUOTA
    for roi in rois[real]:
        assert iou(roi, crowd) < 0.001


def test_no_gt_instances_gives_only_negatives_without_nan():
    proposals = positives_near(GT_A, 3) + FAR
    inputs = batch(proposals, [0, 0], np.zeros([2, 4]), np.zeros([14, 14, 2], bool))
    rois, class_ids, bbox, masks = run_layer(TinyConfig(), inputs)
    for output in (rois, bbox, masks):
        assert np.all(np.isfinite(output))
    real = np.abs(rois[0]).sum(axis=1) > 0
    assert real.sum() == T - POSITIVE_QUOTA and np.all(real[: T - POSITIVE_QUOTA])
    assert np.all(class_ids == 0) and np.all(bbox == 0) and np.all(masks == 0)


def test_fewer_proposals_than_rois_are_zero_padded():
    proposals = [GT_A, positives_near(GT_A, 2)[1], FAR[0], [0, 0, 0, 0]]
    inputs = batch(proposals, [1], [GT_A], mini_masks(1))
    rois, class_ids, bbox, masks = (a[0] for a in run_layer(TinyConfig(), inputs))
    assert list(class_ids) == [1, 1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(rois[2], FAR[0])
    assert np.all(rois[3:] == 0) and np.all(bbox[2:] == 0) and np.all(masks[2:] == 0)


def test_functional_model_with_unknown_batch_and_mixed_images():
    config = TinyConfig()
    proposals = keras.Input((None, 4))
    class_ids = keras.Input((None,), dtype="int32")
    boxes = keras.Input((None, 4))
    masks = keras.Input((14, 14, None), dtype="bool")
    outputs = DetectionTargetLayer(config, name="proposal_targets")([proposals, class_ids, boxes, masks])
    assert tuple(outputs[0].shape) == (None, T, 4)
    assert tuple(outputs[3].shape) == (None, T, 28, 28)
    model = keras.Model([proposals, class_ids, boxes, masks], outputs)
    first = standard_inputs()
    empty = [first[0], np.zeros_like(first[1]), np.zeros_like(first[2]), np.zeros_like(first[3])]
    inputs = [np.concatenate([a, b]) for a, b in zip(first, empty)]
    rois, target_class_ids, _, _ = model(inputs)
    assert rois.shape == (2, T, 4)
    assert int(np.sum(target_class_ids[0] > 0)) == POSITIVE_QUOTA
    assert np.all(target_class_ids[1] == 0) and np.abs(rois[1]).sum() > 0
    # The model description reloads without the Config object.
    restored = keras.models.model_from_json(model.to_json())
    assert (
        restored.get_layer("proposal_targets").get_config()
        == model.get_layer("proposal_targets").get_config()
    )


def test_get_config_round_trip_without_config():
    layer = DetectionTargetLayer(FullMaskConfig(), name="proposal_targets")
    config = layer.get_config()
    assert "config" not in config
    restored = DetectionTargetLayer.from_config(config)
    assert restored.get_config() == config
    assert restored.use_mini_mask is False and restored.mask_shape == [28, 28]
    assert restored.bbox_std_dev == [0.1, 0.1, 0.2, 0.2] and restored.train_rois_per_image == T
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(revived, DetectionTargetLayer) and revived.get_config() == config
    assert layer.compute_mask(standard_inputs()) == [None] * 4


def test_bad_construction_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="config"):
        DetectionTargetLayer()
    layer = DetectionTargetLayer(TinyConfig())
    inputs = standard_inputs()
    with pytest.raises(ValueError, match="4 inputs"):
        layer(inputs[:3])
    with pytest.raises(ValueError, match="gt_masks"):
        DetectionTargetLayer(TinyConfig())(inputs[:3] + [inputs[3][..., 0]])


def test_positive_roi_pack_gathers_positives_batch_major_and_keeps_dtypes():
    class_ids = np.array([[2, 1, 0, -1], [0, 0, 0, 0], [3, 0, 0, 0]], np.int32)
    features = tf.cast(tf.reshape(tf.range(3 * 4 * 2 * 2), [3, 4, 2, 2, 1]), tf.bfloat16)
    targets = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    ids, packed, packed_targets = PositiveRoiPack()([class_ids, features, targets])
    np.testing.assert_array_equal(ids.numpy(), [[2, 1, 3]])
    assert packed.dtype == tf.bfloat16 and packed.shape == (1, 3, 2, 2, 1)
    rows = [(0, 0), (0, 1), (2, 0)]  # (image, roi) of the positives
    np.testing.assert_array_equal(packed.numpy()[0], np.stack([features.numpy()[i, r] for i, r in rows]))
    np.testing.assert_array_equal(packed_targets.numpy()[0], np.stack([targets[i, r] for i, r in rows]))


def test_positive_roi_pack_keeps_one_ignored_row_when_the_batch_has_no_positive():
    class_ids = np.zeros((2, 3), np.int32)
    features = np.random.default_rng(0).normal(size=(2, 3, 4, 4, 2)).astype(np.float32)
    ids, packed = PositiveRoiPack()([class_ids, features])
    assert ids.shape == (1, 1) and int(ids[0, 0]) <= 0  # the mask loss ignores it
    np.testing.assert_array_equal(packed.numpy()[0, 0], features[0, 0])
    # Symbolic use keeps the static trailing sizes the mask head's convolutions need.
    outputs = PositiveRoiPack()([keras.Input((3,), dtype="int32"), keras.Input((3, 4, 4, 2))])
    assert tuple(outputs[1].shape) == (1, None, 4, 4, 2)
