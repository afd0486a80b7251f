"""Training targets for the detection heads: sample RoIs and give each its class, box deltas and mask.

Training only. Boxes are (y1, x1, y2, x2), normalized to [0, 1] as in ``norm_boxes_graph``.
"""

import types

import keras
import numpy as np
import tensorflow as tf

from mrcnn.boxes import box_refinement_graph, overlaps_graph
from mrcnn.graph_ops import Float32Layer, layer_settings, shape_list, std_dev_list, trim_zeros_graph

# IoU thresholds of Matterport's sampler.
POSITIVE_IOU = 0.5
CROWD_IOU = 0.001


def detection_targets_graph(proposals, gt_class_ids, gt_boxes, gt_masks, config):
    """Sample RoIs from the proposals of ONE image and build their training targets.

    Args:
        proposals: [P, 4] float, normalized, zero-padded rows allowed.
        gt_class_ids: [G] int, zero-padded; negative ids mark crowd boxes (COCO ``iscrowd``).
        gt_boxes: [G, 4] float, normalized, zero-padded rows are dropped.
        gt_masks: [mh, mw, G] bool or float. Mini masks (MINI_MASK_SHAPE, the mask inside its gt box)
            when ``config.USE_MINI_MASK``, else full-image masks.
        config: a Config, or any object with TRAIN_ROIS_PER_IMAGE, ROI_POSITIVE_RATIO, BBOX_STD_DEV,
            USE_MINI_MASK and MASK_SHAPE.

    Sampling (Matterport's rules): a proposal is positive when its best IoU with a non-crowd gt box is
    >= 0.5, negative when that IoU is < 0.5 and its best IoU with any crowd box is < 0.001 (proposals
    overlapping crowds are never negatives, crowd boxes never make positives). At most
    int(T * ROI_POSITIVE_RATIO) positives are drawn at random, then int(n_pos / ROI_POSITIVE_RATIO) - n_pos
    negatives. Beyond Matterport: when there is no positive (e.g. an image without instances, which
    Matterport's sampler would leave all padding), T - int(T * ROI_POSITIVE_RATIO) negatives are drawn so
    the image still trains the background class.

    Returns, with T = TRAIN_ROIS_PER_IMAGE and rows ordered positives, negatives, zero padding:
        rois [T, 4] float32 normalized; class_ids [T] int32 (0 for negatives and padding);
        deltas [T, 4] float32, (dy, dx, log dh, log dw) to the assigned gt box divided by BBOX_STD_DEV
        (0 for negatives and padding); masks [T, MASK_SHAPE[0], MASK_SHAPE[1]] float32 in {0, 1}.
    """
    rois_per_image = int(config.TRAIN_ROIS_PER_IMAGE)
    ratio = float(config.ROI_POSITIVE_RATIO)
    mask_shape = [int(s) for s in config.MASK_SHAPE]

    proposals, _ = trim_zeros_graph(tf.cast(proposals, tf.float32), name="trim_proposals")
    gt_boxes, non_zeros = trim_zeros_graph(tf.cast(gt_boxes, tf.float32), name="trim_gt_boxes")
    gt_class_ids = tf.boolean_mask(tf.cast(gt_class_ids, tf.int32), non_zeros)
    gt_masks = tf.boolean_mask(tf.cast(gt_masks, tf.float32), non_zeros, axis=2)

    crowd_boxes = tf.boolean_mask(gt_boxes, gt_class_ids < 0)
    is_instance = gt_class_ids > 0
    gt_boxes = tf.boolean_mask(gt_boxes, is_instance)
    gt_class_ids = tf.boolean_mask(gt_class_ids, is_instance)
    gt_masks = tf.boolean_mask(gt_masks, is_instance, axis=2)

    # A trailing zero column stands for "no box", so max/argmax exist when there are no gt boxes.
    # It never wins the argmax of a positive (IoU >= 0.5 > 0, and argmax takes the first maximum).
    overlaps = tf.pad(overlaps_graph(proposals, gt_boxes), [[0, 0], [0, 1]])
    crowd_overlaps = tf.pad(overlaps_graph(proposals, crowd_boxes), [[0, 0], [0, 1]])
    roi_iou_max = tf.reduce_max(overlaps, axis=1)
    crowd_iou_max = tf.reduce_max(crowd_overlaps, axis=1)

    positive_indices = tf.where(roi_iou_max >= POSITIVE_IOU)[:, 0]
    negative_indices = tf.where(tf.logical_and(roi_iou_max < POSITIVE_IOU, crowd_iou_max < CROWD_IOU))[:, 0]

    positive_quota = int(rois_per_image * ratio)
    positive_indices = tf.random.shuffle(positive_indices)[:positive_quota]
    positive_count = tf.shape(positive_indices)[0]
    negative_count = tf.cast(tf.cast(positive_count, tf.float32) / ratio, tf.int32) - positive_count
    negative_count = tf.where(positive_count > 0, negative_count, rois_per_image - positive_quota)
    negative_count = tf.minimum(negative_count, rois_per_image - positive_count)
    negative_indices = tf.random.shuffle(negative_indices)[:negative_count]

    positive_rois = tf.gather(proposals, positive_indices)
    negative_rois = tf.gather(proposals, negative_indices)
    assignment = tf.argmax(tf.gather(overlaps, positive_indices), axis=1, output_type=tf.int32)
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    roi_gt_class_ids = tf.gather(gt_class_ids, assignment)

    std_dev = tf.constant(np.asarray(config.BBOX_STD_DEV, dtype=np.float32).reshape(4))
    deltas = box_refinement_graph(positive_rois, roi_gt_boxes) / std_dev

    roi_masks = tf.gather(tf.transpose(gt_masks, [2, 0, 1])[..., tf.newaxis], assignment)
    crop_boxes = positive_rois
    if config.USE_MINI_MASK:
        # The mini mask spans its gt box: express the roi in that box's frame.
        y1, x1, y2, x2 = tf.split(positive_rois, 4, axis=1)
        gt_y1, gt_x1, gt_y2, gt_x2 = tf.split(roi_gt_boxes, 4, axis=1)
        gt_h = gt_y2 - gt_y1
        gt_w = gt_x2 - gt_x1
        crop_boxes = tf.concat(
            [(y1 - gt_y1) / gt_h, (x1 - gt_x1) / gt_w, (y2 - gt_y1) / gt_h, (x2 - gt_x1) / gt_w], axis=1
        )
    masks = tf.image.crop_and_resize(roi_masks, crop_boxes, tf.range(positive_count), mask_shape)
    masks = tf.round(masks[..., 0])

    rois = tf.concat([positive_rois, negative_rois], axis=0)
    padding = rois_per_image - tf.shape(rois)[0]
    non_positive = tf.shape(negative_rois)[0] + padding
    rois = tf.reshape(tf.pad(rois, [[0, padding], [0, 0]]), [rois_per_image, 4])
    class_ids = tf.reshape(tf.pad(roi_gt_class_ids, [[0, non_positive]]), [rois_per_image])
    deltas = tf.reshape(tf.pad(deltas, [[0, non_positive], [0, 0]]), [rois_per_image, 4])
    masks = tf.reshape(tf.pad(masks, [[0, non_positive], [0, 0], [0, 0]]), [rois_per_image] + mask_shape)
    return rois, class_ids, deltas, masks


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(Float32Layer):
    """Sample TRAIN_ROIS_PER_IMAGE RoIs per image and build their targets (see ``detection_targets_graph``).

    Inputs: [proposals [B, P, 4] normalized, zero-padded; gt_class_ids [B, G] int (zero-padded, negative =
    crowd); gt_boxes [B, G, 4] normalized; gt_masks [B, mh, mw, G] bool or float (mini masks when
    USE_MINI_MASK, else full image size)].
    Outputs: rois [B, T, 4] float32, target_class_ids [B, T] int32, target_bbox [B, T, 4] float32
    (divided by BBOX_STD_DEV), target_mask [B, T, MASK_SHAPE[0], MASK_SHAPE[1]] float32 in {0, 1}.

    Construct with a Config (``DetectionTargetLayer(config, name="proposal_targets")``) or with the five
    keyword values it uses; ``get_config`` stores only those values, so a saved model reloads without
    the Config. Outputs carry no gradient to the inputs. Not XLA-compilable (data-dependent shapes,
    random shuffle): ``supports_jit`` is False.
    """

    def __init__(
        self,
        config=None,
        train_rois_per_image=None,
        roi_positive_ratio=None,
        bbox_std_dev=None,
        use_mini_mask=None,
        mask_shape=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        values = layer_settings(
            "DetectionTargetLayer",
            config,
            train_rois_per_image=train_rois_per_image,
            roi_positive_ratio=roi_positive_ratio,
            bbox_std_dev=bbox_std_dev,
            use_mini_mask=use_mini_mask,
            mask_shape=mask_shape,
        )
        self.train_rois_per_image = int(values["train_rois_per_image"])
        self.roi_positive_ratio = float(values["roi_positive_ratio"])
        self.bbox_std_dev = std_dev_list("bbox_std_dev", values["bbox_std_dev"])
        self.use_mini_mask = bool(values["use_mini_mask"])
        self.mask_shape = [int(v) for v in values["mask_shape"]]
        if len(self.mask_shape) != 2:
            raise ValueError(f"mask_shape needs 2 values (height, width); got {self.mask_shape}.")
        if self.train_rois_per_image < 1 or not 0 < self.roi_positive_ratio <= 1:
            raise ValueError("train_rois_per_image must be >= 1 and roi_positive_ratio in (0, 1].")
        self.supports_jit = False
        self._settings = types.SimpleNamespace(
            TRAIN_ROIS_PER_IMAGE=self.train_rois_per_image,
            ROI_POSITIVE_RATIO=self.roi_positive_ratio,
            BBOX_STD_DEV=self.bbox_std_dev,
            USE_MINI_MASK=self.use_mini_mask,
            MASK_SHAPE=self.mask_shape,
        )

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 4:
            raise ValueError(
                "DetectionTargetLayer takes 4 inputs: [proposals, gt_class_ids, gt_boxes, gt_masks]."
            )
        ranks = [len(shape) for shape in input_shape]
        if ranks != [3, 2, 3, 4]:
            raise ValueError(
                f"DetectionTargetLayer input ranks are {ranks}; expected proposals [B, P, 4], gt_class_ids "
                "[B, G], gt_boxes [B, G, 4], gt_masks [B, height, width, G]."
            )
        super().build(input_shape)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        # Targets are constants for the heads: no gradient flows back into the proposals.
        elements = (
            tf.stop_gradient(tf.cast(proposals, tf.float32)),
            tf.cast(gt_class_ids, tf.int32),
            tf.stop_gradient(tf.cast(gt_boxes, tf.float32)),
            tf.stop_gradient(tf.cast(gt_masks, tf.float32)),
        )
        rois_per_image = self.train_rois_per_image
        signature = (
            tf.TensorSpec([rois_per_image, 4], tf.float32),
            tf.TensorSpec([rois_per_image], tf.int32),
            tf.TensorSpec([rois_per_image, 4], tf.float32),
            tf.TensorSpec([rois_per_image] + self.mask_shape, tf.float32),
        )
        outputs = tf.map_fn(
            lambda image: detection_targets_graph(*image, self._settings),
            elements,
            fn_output_signature=signature,
        )
        return list(outputs)

    def compute_mask(self, inputs, mask=None):
        return [None] * 4

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "train_rois_per_image": self.train_rois_per_image,
                "roi_positive_ratio": self.roi_positive_ratio,
                "bbox_std_dev": list(self.bbox_std_dev),
                "use_mini_mask": self.use_mini_mask,
                "mask_shape": list(self.mask_shape),
            }
        )
        return config


def positive_quota(config):
    """The most positive RoIs a training image can have: int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)."""
    return max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveRoiSlice(Float32Layer):
    """Keep the first ``count`` RoI rows of each input: [B, T, ...] -> [B, count, ...] for every input.

    DetectionTargetLayer orders positives first and never has more than ``positive_quota(config)`` of
    them, so slicing there keeps every RoI that the mask loss uses. Running the mask head on these rows
    only gives the same mask loss as Matterport's (which ran the head on all T RoIs and then discarded
    the negatives) for about a third of the mask-head compute.
    """

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, inputs):
        return [tensor[:, : self.count] for tensor in inputs]

    def compute_output_shape(self, input_shape):
        return [(shape[0], self.count, *shape[2:]) for shape in input_shape]

    def get_config(self):
        return {**super().get_config(), "count": self.count}


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveRoiPack(keras.layers.Layer):
    """Gather the positive RoIs of the whole batch into one row: [B, R, ...] -> [1, P, ...] per input.

    Inputs: [target_class_ids [B, R] int, then any tensors [B, R, ...] (RoI features in any dtype, mask
    targets, ...)]; every input is packed the same way and keeps its dtype. P is the number of RoIs of the
    batch with class id > 0, in batch-major order. A batch without any positive keeps its first RoI (whose
    class id is <= 0, so the mask loss ignores it): the mask head never sees an empty batch, over which
    its BatchNorm statistics would be NaN. Under a strategy with several replicas each replica packs its own
    part of the batch, so a replica without positives adds that one ignored row to the mask head's
    synchronized BatchNorm statistics, which one device would not (TensorFlow's CPU convolution gradients
    fail on empty batches, so the row cannot simply be left out).

    The mask head then computes only the masks the loss uses. ``PositiveRoiSlice`` alone leaves every image
    at ``positive_quota`` rows, most of them padding early in training (shapes, 128 px: 47 positives of
    80 rows per batch of 8 on average over the first steps).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, inputs):
        class_ids = inputs[0]
        flat_ids = tf.reshape(class_ids, [-1])
        keep = tf.where(flat_ids > 0)[:, 0]
        keep = tf.concat([keep, tf.zeros([1 - tf.minimum(tf.size(keep), 1)], tf.int64)], axis=0)
        return [
            tf.expand_dims(tf.gather(tf.reshape(tensor, [-1] + shape_list(tensor)[2:]), keep), 0)
            for tensor in inputs
        ]

    def compute_output_shape(self, input_shape):
        return [(1, None, *shape[2:]) for shape in input_shape]
