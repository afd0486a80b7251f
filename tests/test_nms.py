"""mrcnn.kernels.nms: the blocked XLA greedy NMS selects exactly what tf.image.non_max_suppression selects."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import kernels
from mrcnn.kernels import nms_indices
from mrcnn.kernels.nms import BLOCK


def reference(boxes, max_output_size, iou_threshold):
    """TensorFlow's kernel on boxes taken in the given order, padded with -1 like nms_indices."""
    order = -np.arange(len(boxes), dtype=np.float32)
    keep = tf.image.non_max_suppression(boxes, order, max_output_size, iou_threshold).numpy()
    return np.concatenate([keep, -np.ones(max_output_size - len(keep), np.int32)])


def random_boxes(rng, count, flip=False):
    """Anchor-like boxes of 5 scales and 3 ratios, jittered, clipped to [0, 1] (some degenerate)."""
    center = rng.uniform(0, 1, (count, 2))
    scale = rng.choice([0.06, 0.12, 0.25, 0.5, 1.0], count) * rng.uniform(0.7, 1.4, count)
    ratio = np.sqrt(rng.choice([0.5, 1.0, 2.0], count))
    half = np.stack([scale * ratio, scale / ratio], 1) / 2
    boxes = np.clip(np.concatenate([center - half, center + half], 1), 0, 1).astype(np.float32)
    if flip:  # corners given as (y2, x2, y1, x1) for some boxes: TF's rule takes either order
        swap = rng.uniform(size=count) < 0.3
        boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
    return boxes


@pytest.mark.parametrize(
    "count,max_output_size,iou_threshold,flip",
    [
        (4092, 2000, 0.7, False),  # shapes config: stops at max_output_size
        (1000, 1000, 0.5, True),  # every candidate decided, corners in either order
        (37, 50, 0.3, False),  # fewer candidates than one block's multiple and than the output
        (5, 3, 0.7, False),  # less than one block
    ],
)
def test_selects_what_tensorflow_selects(count, max_output_size, iou_threshold, flip):
    assert kernels.enabled()
    rng = np.random.default_rng(count)
    boxes = random_boxes(rng, count, flip)
    ours = nms_indices(tf.constant(boxes), max_output_size, iou_threshold).numpy()
    want = reference(boxes, max_output_size, iou_threshold)
    np.testing.assert_array_equal(ours, want)
    assert ours.dtype == np.int32 and ours.shape == (max_output_size,)


def test_hand_built_cases_threshold_ties_duplicates_and_zero_area():
    boxes = np.array(
        [
            [0, 0, 1, 1],  # 0: kept
            [0, 0, 1, 0.5],  # 1: IoU with 0 exactly 0.5: kept at threshold 0.5 (strictly greater drops)
            [0, 0, 1, 1],  # 2: duplicate of 0: dropped
            [0.2, 0.2, 0.2, 0.9],  # 3: zero area: never drops, never dropped
            [0.2, 0.2, 0.2, 0.9],  # 4: its duplicate: kept too (IoU 0 with zero-area boxes)
            [0, 0.5, 1, 1],  # 5: IoU 0.5 with 0, 0 with 1: kept
        ]
        + [[0.01 * i, 0.0, 0.01 * i + 0.5, 0.5] for i in range(BLOCK + 3)],  # a chain across blocks
        np.float32,
    )
    for threshold in (0.5, 0.49, 0.9):
        ours = nms_indices(tf.constant(boxes), len(boxes), threshold).numpy()
        np.testing.assert_array_equal(ours, reference(boxes, len(boxes), threshold))
    ours = nms_indices(tf.constant(boxes), len(boxes), 0.5).numpy()
    assert list(ours[:6]) == [0, 1, 3, 4, 5, 6]


def test_disabled_uses_tensorflows_kernel_with_the_same_result():
    boxes = tf.constant(random_boxes(np.random.default_rng(3), 300))

    @tf.function
    def traced(b):
        return nms_indices(b, 100, 0.7)

    with kernels.disabled():
        assert not kernels.enabled()
        graph = traced.get_concrete_function(boxes).graph.as_graph_def()
        plain = traced(boxes).numpy()
    assert any(node.op.startswith("NonMaxSuppression") for node in graph.node)
    np.testing.assert_array_equal(plain, nms_indices(boxes, 100, 0.7).numpy())
