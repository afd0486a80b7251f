"""ProposalLayer: turn RPN scores and deltas into a fixed number of region proposals per image.

Boxes are (y1, x1, y2, x2) in normalized coordinates (see ``mrcnn.boxes.norm_boxes_graph``).
"""

import keras
import tensorflow as tf

from mrcnn import kernels
from mrcnn.boxes import apply_box_deltas_graph, clip_boxes_graph
from mrcnn.graph_ops import Float32Layer, layer_settings, std_dev_list


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(Float32Layer):
    """Select the top anchors by foreground score, refine them and keep ``proposal_count`` after NMS.

    Inputs: [rpn_probs [B, A, 2] (background, foreground), rpn_bbox [B, A, 4] deltas
    (dy, dx, log(dh), log(dw)) still divided by RPN_BBOX_STD_DEV, anchors [B, A, 4] normalized].
    Output: float32 [B, proposal_count, 4] normalized proposals, score-descending, zero-padded at the
    end when NMS keeps fewer boxes.

    Per image: deltas x RPN_BBOX_STD_DEV; keep the top min(PRE_NMS_LIMIT, A) anchors by foreground
    score (ties: lower anchor index first); apply the deltas; clip to [0, 1]; greedy NMS dropping boxes
    with IoU > ``nms_threshold`` (``mrcnn.kernels.nms_indices``: TensorFlow's rule, blocked and XLA-compiled
    on CPU). Top-k, gathers, decoding and clipping run batched; NMS runs per image (``tf.map_fn``).
    Matterport's semantics, computed without its per-image Python loop.

    Construct with a Config (``ProposalLayer(1000, 0.7, config=config, name="ROI")``) or with
    ``pre_nms_limit`` and ``rpn_bbox_std_dev``; ``get_config`` stores these values, not the Config.
    """

    def __init__(
        self, proposal_count, nms_threshold, config=None, pre_nms_limit=None, rpn_bbox_std_dev=None, **kwargs
    ):
        super().__init__(**kwargs)
        values = layer_settings(
            "ProposalLayer", config, pre_nms_limit=pre_nms_limit, rpn_bbox_std_dev=rpn_bbox_std_dev
        )
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(values["pre_nms_limit"])
        self.rpn_bbox_std_dev = std_dev_list("rpn_bbox_std_dev", values["rpn_bbox_std_dev"])
        if self.proposal_count < 1 or self.pre_nms_limit < 1:
            raise ValueError(
                f"proposal_count ({self.proposal_count}) and pre_nms_limit "
                f"({self.pre_nms_limit}) must be >= 1."
            )
        if not 0.0 <= self.nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be an IoU in [0, 1]; got {self.nms_threshold}.")
        self.supports_jit = False

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
            raise ValueError(
                "ProposalLayer takes 3 inputs: [rpn_probs [B, A, 2], rpn_bbox [B, A, 4], anchors [B, A, 4]]."
            )
        ranks = [len(shape) for shape in input_shape]
        depths = [shape[-1] for shape in input_shape]
        if ranks != [3, 3, 3] or any(d not in (None, want) for d, want in zip(depths, (2, 4, 4))):
            raise ValueError(
                f"ProposalLayer got input shapes {[tuple(s) for s in input_shape]}; expected "
                "rpn_probs [B, A, 2], rpn_bbox [B, A, 4], anchors [B, A, 4]."
            )
        super().build(input_shape)

    def call(self, inputs):
        rpn_probs, rpn_bbox, anchors = inputs
        scores = tf.cast(rpn_probs[..., 1], tf.float32)
        deltas = tf.cast(rpn_bbox, tf.float32) * tf.constant(self.rpn_bbox_std_dev, tf.float32)
        anchors = tf.cast(anchors, tf.float32)

        num_anchors = anchors.shape[1]
        if num_anchors is None:
            pre_nms = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[1])
        else:
            pre_nms = min(self.pre_nms_limit, num_anchors)
        order = kernels.top_k_indices(scores, pre_nms)
        deltas = tf.gather(deltas, order, batch_dims=1)
        anchors = tf.gather(anchors, order, batch_dims=1)

        boxes = apply_box_deltas_graph(anchors, deltas)
        boxes = clip_boxes_graph(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))

        count = self.proposal_count

        def nms(image_boxes):
            keep = kernels.nms_indices(image_boxes, count, self.nms_threshold)
            # Slots after the last kept box (index -1) become zero boxes.
            return tf.where((keep >= 0)[:, None], tf.gather(image_boxes, tf.maximum(keep, 0)), 0.0)

        return tf.map_fn(nms, boxes, fn_output_signature=tf.TensorSpec([count, 4], tf.float32))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold,
                "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": list(self.rpn_bbox_std_dev),
            }
        )
        return config
