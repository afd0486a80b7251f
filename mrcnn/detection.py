"""DetectionLayer: final boxes, classes and scores from the classifier head (inference only).

Boxes are (y1, x1, y2, x2) in normalized coordinates (see ``mrcnn.boxes.norm_boxes_graph``).
"""

import types

import keras
import numpy as np
import tensorflow as tf

from mrcnn import kernels
from mrcnn.boxes import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph
from mrcnn.graph_ops import Float32Layer, layer_settings, std_dev_list
from mrcnn.transform import parse_image_meta_graph


def _select_detections(boxes, class_ids, scores, keep, num_classes, max_instances, nms_threshold):
    """Per-class NMS and top-``max_instances`` for one image.

    boxes [R, 4], class_ids int32 [R], scores [R], keep bool [R] (candidates). Returns float32
    [max_instances, 6] rows (y1, x1, y2, x2, class_id, score), score-descending (ties: lower RoI index
    first), zero-padded.

    ``kernels.per_class_nms`` keeps the per-class NMS results (at least the ``max_instances`` best of
    them). Sorting those by score and cutting at ``max_instances`` equals Matterport's per-class NMS
    capped at ``max_instances`` followed by top-k.
    """
    candidates = tf.where(keep)[:, 0]  # ascending RoI index
    boxes = tf.gather(boxes, candidates)
    class_ids = tf.gather(class_ids, candidates)
    scores = tf.gather(scores, candidates)

    selected = kernels.per_class_nms(boxes, class_ids, scores, num_classes, max_instances, nms_threshold)
    # Rank the kept boxes (in RoI order) by score, followed by max_instances padding slots of score -1:
    # top_k keeps equal scores in input order, so ties go to the lower RoI index, and the result always
    # has max_instances rows (no padding op whose size depends on the data, which OpenVINO rejects).
    count = tf.shape(scores)[0]
    ranked = tf.concat([tf.gather(scores, selected), -tf.ones([max_instances])], axis=0)
    slots = tf.concat([selected, tf.fill([max_instances], tf.cast(count, selected.dtype))], axis=0)
    _, order = tf.math.top_k(ranked, k=max_instances)
    picked = tf.gather(slots, order)  # index ``count`` picks the zero row appended below
    return tf.concat(
        [
            tf.gather(tf.concat([boxes, tf.zeros([1, 4])], axis=0), picked),
            tf.expand_dims(tf.cast(tf.gather(tf.concat([class_ids, [0]], axis=0), picked), tf.float32), -1),
            tf.expand_dims(tf.gather(tf.concat([scores, [0.0]], axis=0), picked), -1),
        ],
        axis=1,
    )


def _refine_detections_batch(rois, probs, deltas, windows, settings):
    """Batched refine_detections_graph: rois [B, R, 4], probs [B, R, N], deltas [B, R, N, 4],
    windows [B, 4] (all normalized) -> float32 [B, DETECTION_MAX_INSTANCES, 6]."""
    rois = tf.cast(rois, tf.float32)
    probs = tf.cast(probs, tf.float32)
    deltas = tf.cast(deltas, tf.float32)
    class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)
    class_scores = tf.gather(probs, class_ids, batch_dims=2)
    class_deltas = tf.gather(deltas, class_ids, batch_dims=2)
    std_dev = tf.constant(np.asarray(settings.BBOX_STD_DEV, dtype=np.float32).reshape(4))
    refined = apply_box_deltas_graph(rois, class_deltas * std_dev)
    refined = clip_boxes_graph(refined, windows)

    keep = class_ids > 0
    if settings.DETECTION_MIN_CONFIDENCE:
        keep = tf.logical_and(keep, class_scores >= settings.DETECTION_MIN_CONFIDENCE)

    num_classes = int(probs.shape[-1])
    max_instances = int(settings.DETECTION_MAX_INSTANCES)
    nms_threshold = float(settings.DETECTION_NMS_THRESHOLD)
    return tf.map_fn(
        lambda image: _select_detections(*image, num_classes, max_instances, nms_threshold),
        (refined, class_ids, class_scores, keep),
        fn_output_signature=tf.TensorSpec([max_instances, 6], tf.float32),
    )


def refine_detections_graph(rois, probs, deltas, window, config):
    """Refine, filter and NMS the classified RoIs of ONE image.

    rois: [R, 4] normalized; probs: [R, NUM_CLASSES] class probabilities; deltas: [R, NUM_CLASSES, 4]
    class-specific (dy, dx, log(dh), log(dw)) divided by BBOX_STD_DEV; window: [4] normalized image
    window (boxes are clipped to it); config: anything with BBOX_STD_DEV, DETECTION_MIN_CONFIDENCE,
    DETECTION_MAX_INSTANCES, DETECTION_NMS_THRESHOLD.

    Returns float32 [DETECTION_MAX_INSTANCES, 6]: (y1, x1, y2, x2, class_id, score) normalized,
    score-descending, zero-padded. Each RoI takes its argmax class; background and scores below
    DETECTION_MIN_CONFIDENCE are dropped; NMS (IoU > DETECTION_NMS_THRESHOLD suppresses) is per class.
    """
    window = tf.cast(window, tf.float32)
    return _refine_detections_batch(rois[None], probs[None], deltas[None], window[None], config)[0]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(Float32Layer):
    """Final detections for each image (see ``refine_detections_graph``), batched.

    Inputs: [rois [B, R, 4] normalized, mrcnn_class [B, R, NUM_CLASSES] probabilities, mrcnn_bbox
    [B, R, NUM_CLASSES, 4] deltas, image_meta [B, IMAGE_META_SIZE]]. Output: float32
    [B, DETECTION_MAX_INSTANCES, 6] rows (y1, x1, y2, x2, class_id, score), normalized to the molded
    image, score-descending, zero-padded (class_id 0 marks padding).

    Boxes are clipped to each image's window from the meta, normalized by the molded image shape of
    the first meta row. Argmax, delta decoding and clipping run batched; NMS runs per image.

    Construct with a Config (``DetectionLayer(config, name="mrcnn_detection")``) or with the four
    keyword values it uses; ``get_config`` stores those values, not the Config.
    """

    def __init__(
        self,
        config=None,
        detection_max_instances=None,
        detection_min_confidence=None,
        detection_nms_threshold=None,
        bbox_std_dev=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        values = layer_settings(
            "DetectionLayer",
            config,
            detection_max_instances=detection_max_instances,
            detection_min_confidence=detection_min_confidence,
            detection_nms_threshold=detection_nms_threshold,
            bbox_std_dev=bbox_std_dev,
        )
        self.detection_max_instances = int(values["detection_max_instances"])
        self.detection_min_confidence = float(values["detection_min_confidence"])
        self.detection_nms_threshold = float(values["detection_nms_threshold"])
        self.bbox_std_dev = std_dev_list("bbox_std_dev", values["bbox_std_dev"])
        if self.detection_max_instances < 1:
            raise ValueError(f"detection_max_instances must be >= 1; got {self.detection_max_instances}.")
        if not 0.0 <= self.detection_nms_threshold <= 1.0:
            raise ValueError(
                f"detection_nms_threshold must be an IoU in [0, 1]; got {self.detection_nms_threshold}."
            )
        self.supports_jit = False
        self._settings = types.SimpleNamespace(
            DETECTION_MAX_INSTANCES=self.detection_max_instances,
            DETECTION_MIN_CONFIDENCE=self.detection_min_confidence,
            DETECTION_NMS_THRESHOLD=self.detection_nms_threshold,
            BBOX_STD_DEV=self.bbox_std_dev,
        )

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 4:
            raise ValueError("DetectionLayer takes 4 inputs: [rois, mrcnn_class, mrcnn_bbox, image_meta].")
        ranks = [len(shape) for shape in input_shape]
        if ranks != [3, 3, 4, 2]:
            raise ValueError(
                f"DetectionLayer input ranks are {ranks}; expected rois [B, R, 4], mrcnn_class "
                "[B, R, NUM_CLASSES], mrcnn_bbox [B, R, NUM_CLASSES, 4], image_meta [B, META]."
            )
        super().build(input_shape)

    def call(self, inputs):
        rois, mrcnn_class, mrcnn_bbox, image_meta = inputs
        meta = parse_image_meta_graph(image_meta)
        image_shape = meta["image_shape"][0]
        windows = norm_boxes_graph(meta["window"], image_shape[:2])
        return _refine_detections_batch(rois, mrcnn_class, mrcnn_bbox, windows, self._settings)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.detection_max_instances, 6)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "detection_max_instances": self.detection_max_instances,
                "detection_min_confidence": self.detection_min_confidence,
                "detection_nms_threshold": self.detection_nms_threshold,
                "bbox_std_dev": list(self.bbox_std_dev),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(Float32Layer):
    """The box columns of DetectionLayer's output: [B, D, 6] -> [B, D, 4] (y1, x1, y2, x2) normalized."""

    def call(self, detections):
        return detections[..., :4]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)
