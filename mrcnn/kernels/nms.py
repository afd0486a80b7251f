"""Greedy non-maximum suppression over score-sorted boxes, blocked and XLA-compiled for the CPU.

The proposal layer keeps up to ``max_output_size`` of its pre-NMS boxes (already sorted by descending
score) by greedy NMS. TensorFlow's CPU kernel (``tf.image.non_max_suppression``) compares each candidate
with the boxes selected so far one pair at a time. ``blocked_nms`` selects the same boxes in blocks of
``BLOCK`` candidates: the IoUs of a block against every selected box, then the greedy order inside the
block, as vector operations in one XLA program per image (measurements in benchmarks/README.md).

Same rule as TensorFlow's kernel: candidates in the given order; a candidate is dropped when its IoU with
an already selected box is strictly greater than ``iou_threshold``; the IoU of two boxes is 0 when either
has zero area (``mrcnn.boxes.nms_iou_graph``); selection stops at ``max_output_size`` boxes. Boxes are
(y1, x1, y2, x2) in any units, corners in either order. ``mrcnn.kernels.select.nms_indices`` decides
whether this or TensorFlow's kernel runs; both give the same indices.
"""

import numpy as np
import tensorflow as tf

from mrcnn.boxes import nms_corners_and_area_graph, nms_iou_graph

BLOCK = 16  # candidates decided per loop step (block sizes compared in benchmarks/README.md)


_LATER_IN_BLOCK = np.triu(np.ones([BLOCK, BLOCK], bool), 1)  # [i, j]: candidate j comes after i


@tf.function(jit_compile=True)
def blocked_nms(boxes, max_output_size, iou_threshold):
    """Greedy NMS as one XLA program: a while loop over blocks of ``BLOCK`` candidates.

    State: the selected boxes [max_output_size + 1, 5] (the last row is a write-off slot for rejected
    candidates), their indices and their count. Each step drops the block's candidates that overlap a
    selected box, resolves the block's own greedy order in BLOCK unrolled vector steps, and appends the
    survivors. The loop ends after the last block or once max_output_size boxes are selected.
    """
    count = tf.shape(boxes)[0]
    blocks = (count + BLOCK - 1) // BLOCK
    candidates = tf.pad(nms_corners_and_area_graph(boxes), [[0, blocks * BLOCK - count], [0, 0]])
    slots = max_output_size + 1
    slot_ids = tf.range(slots)

    def not_done(block, selected_count, selected, indices):
        return tf.logical_and(block < blocks, selected_count < max_output_size)

    def step(block, selected_count, selected, indices):
        start = block * BLOCK
        block_boxes = tf.slice(candidates, [start, 0], [BLOCK, 5])
        index = start + tf.range(BLOCK)
        overlaps_selected = tf.logical_and(
            nms_iou_graph(block_boxes, selected) > iou_threshold, (slot_ids < selected_count)[None, :]
        )
        kept = tf.logical_and(index < count, tf.logical_not(tf.reduce_any(overlaps_selected, axis=1)))
        suppresses = tf.logical_and(nms_iou_graph(block_boxes, block_boxes) > iou_threshold, _LATER_IN_BLOCK)
        for i in range(BLOCK):  # candidate i, if still kept, drops the later ones it overlaps
            kept = tf.logical_and(kept, tf.logical_not(tf.logical_and(kept[i], suppresses[i])))
        rank = tf.cumsum(tf.cast(kept, tf.int32), exclusive=True)
        kept = tf.logical_and(kept, selected_count + rank < max_output_size)
        slot = tf.where(kept, selected_count + rank, max_output_size)[:, None]
        selected = tf.tensor_scatter_nd_update(selected, slot, block_boxes)
        indices = tf.tensor_scatter_nd_update(indices, slot, tf.where(kept, index, -1))
        return block + 1, selected_count + tf.reduce_sum(tf.cast(kept, tf.int32)), selected, indices

    _, _, _, indices = tf.while_loop(
        not_done, step, [tf.constant(0), tf.constant(0), tf.zeros([slots, 5]), tf.fill([slots], -1)]
    )
    return indices[:max_output_size]
