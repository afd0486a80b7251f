"""DetectionLayer / refine_detections_graph: class-specific refinement, filters, per-class NMS, padding."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_configs import Tiny64Config

from mrcnn import utils
from mrcnn.detection import DetectionBoxes, DetectionLayer, refine_detections_graph

NUM_CLASSES = 4
STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


class SmallConfig(Tiny64Config):
    NAME = "detection"
    NUM_CLASSES = NUM_CLASSES
    DETECTION_MAX_INSTANCES = 6
    DETECTION_MIN_CONFIDENCE = 0.5
    DETECTION_NMS_THRESHOLD = 0.3


def make_meta(windows, side=64):
    meta = np.zeros((len(windows), 12 + NUM_CLASSES), np.float32)
    meta[:, 4:7] = [side, side, 3]
    meta[:, 7:11] = windows
    return meta


def reference_detections(rois, probs, deltas, window, min_conf, nms_threshold, max_instances):
    """Matterport's refine_detections for one image, in numpy (per-class greedy NMS, then top-k)."""
    index = np.arange(len(rois))
    class_ids = probs.argmax(axis=1)
    scores = probs[index, class_ids]
    boxes = utils.apply_box_deltas(rois, deltas[index, class_ids] * STD)
    low, high = np.tile(window[:2], 2), np.tile(window[2:], 2)
    boxes = np.minimum(np.maximum(boxes, low), high)
    keep = (class_ids > 0) & (scores >= min_conf)
    kept = []
    for class_id in np.unique(class_ids[keep]):
        ids = np.where(keep & (class_ids == class_id))[0]
        kept.extend(ids[utils.non_max_suppression(boxes[ids], scores[ids], nms_threshold)][:max_instances])
    kept = sorted(kept, key=lambda i: (-scores[i], i))[:max_instances]
    out = np.zeros((max_instances, 6), np.float32)
    for row, i in enumerate(kept):
        out[row] = [*boxes[i], class_ids[i], scores[i]]
    return out


def hand_case():
    """7 RoIs covering: same-class overlap, cross-class overlap, background, score at / below the
    threshold, class-specific deltas and window clipping."""
    rois = np.array(
        [
            [0.2, 0.2, 0.5, 0.5],  # 0: class 1, 0.9
            [0.22, 0.22, 0.52, 0.52],  # 1: class 1, 0.8, IoU 0.77 with 0 -> suppressed
            [0.22, 0.22, 0.52, 0.52],  # 2: class 2, 0.85, overlaps 0 but other class -> kept
            [0.6, 0.6, 0.8, 0.8],  # 3: background -> dropped
            [0.6, 0.1, 0.8, 0.3],  # 4: class 3, exactly 0.5 -> kept (>=)
            [0.3, 0.6, 0.5, 0.8],  # 5: class 2, 0.45 -> dropped
            [0.0, 0.6, 0.4, 0.9],
        ],  # 6: class 1, 0.95, shifted by its delta and clipped
        np.float32,
    )
    probs = np.array(
        [
            [0.05, 0.9, 0.03, 0.02],
            [0.1, 0.8, 0.05, 0.05],
            [0.05, 0.05, 0.85, 0.05],
            [0.9, 0.05, 0.03, 0.02],
            [0.25, 0.125, 0.125, 0.5],
            [0.2, 0.175, 0.45, 0.175],
            [0.02, 0.95, 0.02, 0.01],
        ],
        np.float32,
    )
    deltas = np.zeros((7, NUM_CLASSES, 4), np.float32)
    deltas[6, 1] = [0.0, 1.0, 0.0, 0.0]  # x shift by 1 * 0.1 * width 0.3 = 0.03
    deltas[6, 2] = [5.0, 5.0, 1.0, 1.0]  # other classes' deltas must be ignored
    deltas[0, 0] = [3.0, 3.0, 3.0, 3.0]
    window_px = [8, 0, 56, 64]  # y1 = 8 px -> 8 / 63 normalized
    top = 8 / 63
    expected = np.array(
        [
            [top, 0.63, 0.4, 0.93, 1, 0.95],
            [0.2, 0.2, 0.5, 0.5, 1, 0.9],
            [0.22, 0.22, 0.52, 0.52, 2, 0.85],
            [0.6, 0.1, 0.8, 0.3, 3, 0.5],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        np.float32,
    )
    return rois, probs, deltas, window_px, expected


def test_hand_computed_case_and_empty_image_in_batch():
    rois, probs, deltas, window_px, expected = hand_case()
    background = np.tile([[1.0, 0.0, 0.0, 0.0]], (7, 1)).astype(np.float32)
    inputs = [
        np.stack([rois, rois]),
        np.stack([probs, background]),
        np.stack([deltas, deltas]),
        make_meta([window_px, [0, 0, 64, 64]]),
    ]
    out = np.asarray(DetectionLayer(SmallConfig(), name="mrcnn_detection")(inputs))
    assert out.shape == (2, 6, 6)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    np.testing.assert_array_equal(out[1], np.zeros((6, 6)))


def test_max_instances_keeps_the_best_scores():
    rois, probs, deltas, window_px, expected = hand_case()
    layer = DetectionLayer(SmallConfig(), detection_max_instances=2)
    out = np.asarray(layer([rois[None], probs[None], deltas[None], make_meta([window_px])]))
    np.testing.assert_allclose(out[0], expected[:2], atol=1e-6)


def test_ties_keep_lower_roi_index_first():
    rois = np.array(
        [
            [0.1, 0.1, 0.3, 0.3],
            [0.12, 0.1, 0.32, 0.3],  # same class, overlapping, equal scores
            [0.6, 0.6, 0.8, 0.8],
            [0.5, 0.1, 0.7, 0.3],
        ],
        np.float32,
    )
    probs = np.array(
        [[0.25, 0.75, 0, 0], [0.25, 0.75, 0, 0], [0.25, 0, 0.75, 0], [0.25, 0.75, 0, 0]], np.float32
    )
    deltas = np.zeros((4, NUM_CLASSES, 4), np.float32)
    out = refine_detections_graph(
        tf.constant(rois),
        tf.constant(probs),
        tf.constant(deltas),
        tf.constant([0.0, 0.0, 1.0, 1.0]),
        SmallConfig(),
    ).numpy()
    np.testing.assert_allclose(out[:3, :5], np.c_[rois[[0, 2, 3]], [1, 2, 1]], atol=1e-7)
    assert np.all(out[3:] == 0)


def test_matches_numpy_reference_on_random_inputs():
    rng = np.random.default_rng(0)
    batch, num_rois = 2, 80
    centers = rng.uniform(0.1, 0.9, (batch, num_rois, 2))
    sizes = rng.uniform(0.1, 0.3, (batch, num_rois, 2))
    rois = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1).astype(np.float32)
    logits = rng.normal(0, 2.5, (batch, num_rois, NUM_CLASSES))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, num_rois, NUM_CLASSES, 4)).astype(np.float32)
    windows_px = [[6, 2, 60, 58], [0, 10, 64, 54]]
    layer = DetectionLayer(
        detection_max_instances=10,
        detection_min_confidence=0.4,
        detection_nms_threshold=0.3,
        bbox_std_dev=STD,
    )
    out = np.asarray(layer([rois, probs, deltas, make_meta(windows_px)]))
    for i in range(batch):
        window = utils.norm_boxes(np.array(windows_px[i]), (64, 64))
        expected = reference_detections(rois[i], probs[i], deltas[i], window, 0.4, 0.3, 10)
        np.testing.assert_allclose(out[i], expected, atol=1e-6, err_msg=f"image {i}")
        assert np.all(np.diff(out[i, :, 5]) <= 0)  # sorted by score


def test_refine_detections_graph_is_one_row_of_the_layer():
    rois, probs, deltas, window_px, _ = hand_case()
    config = SmallConfig()
    window = utils.norm_boxes(np.array(window_px), (64, 64))
    single = refine_detections_graph(
        tf.constant(rois), tf.constant(probs), tf.constant(deltas), tf.constant(window), config
    ).numpy()
    inputs = [rois[None], probs[None], deltas[None], make_meta([window_px])]
    batched = np.asarray(DetectionLayer(config)(inputs))
    np.testing.assert_array_equal(single, batched[0])


def test_symbolic_shapes_and_detection_boxes():
    rois = keras.Input((30, 4))
    probs = keras.Input((30, NUM_CLASSES))
    deltas = keras.Input((30, NUM_CLASSES, 4))
    meta = keras.Input((12 + NUM_CLASSES,))
    detections = DetectionLayer(SmallConfig(), name="mrcnn_detection")([rois, probs, deltas, meta])
    boxes = DetectionBoxes(name="detection_boxes")(detections)
    assert tuple(detections.shape) == (None, 6, 6)
    assert tuple(boxes.shape) == (None, 6, 4)
    sample = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    np.testing.assert_array_equal(np.asarray(DetectionBoxes()(sample)), sample[..., :4])


def test_get_config_round_trip_and_errors():
    layer = DetectionLayer(SmallConfig(), name="mrcnn_detection")
    config = layer.get_config()
    clone = DetectionLayer.from_config(config)
    assert clone.name == "mrcnn_detection"
    assert (clone.detection_max_instances, clone.detection_min_confidence, clone.detection_nms_threshold) == (
        6,
        0.5,
        0.3,
    )
    np.testing.assert_allclose(clone.bbox_std_dev, STD)
    rois, probs, deltas, window_px, _ = hand_case()
    inputs = [rois[None], probs[None], deltas[None], make_meta([window_px])]
    np.testing.assert_array_equal(np.asarray(layer(inputs)), np.asarray(clone(inputs)))
    boxes_layer = DetectionBoxes(name="detection_boxes")
    assert DetectionBoxes.from_config(boxes_layer.get_config()).name == "detection_boxes"
    with pytest.raises(ValueError, match="config"):
        DetectionLayer()
    with pytest.raises(ValueError, match="4 inputs"):
        DetectionLayer(SmallConfig())([rois[None], probs[None], deltas[None]])
