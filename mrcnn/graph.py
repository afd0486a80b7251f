"""The Keras graph of Mask R-CNN, stage by stage, for training and for inference.

``build_graph(mode, config)`` wires the stages, each defined in its own module:

    inputs -> backbone (ResNet + FPN: ``backbone``) -> RPN (``rpn``) -> proposals (``proposals``)
      training:  -> detection targets (``targets``) -> box head and mask head (``heads``, RoIAlign in
                    ``roi_align``) -> the five loss layers (``losses``) -> ``training.MaskRCNNTrainer``
      inference: -> box head -> detections (``detection``) -> mask head -> ``keras.Model``

Both modes share the trunk (inputs to proposals) and the heads' layer names, so weights move between a
training and an inference model by name. Boxes inside the graph are normalized (y1, x1, y2, x2).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.backbone import bn_training, build_backbone
from mrcnn.boxes import norm_boxes_graph
from mrcnn.detection import DetectionBoxes, DetectionLayer
from mrcnn.graph_ops import Float32Layer
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph, fpn_mask_head
from mrcnn.losses import MrcnnBboxLoss, MrcnnClassLoss, MrcnnMaskLoss, RPNBboxLoss, RPNClassLoss
from mrcnn.proposals import ProposalLayer
from mrcnn.roi_align import PyramidROIAlign
from mrcnn.rpn import anchor_layer, build_rpn_model
from mrcnn.targets import DetectionTargetLayer, PositiveRoiPack, PositiveRoiSlice, positive_quota
from mrcnn.training import MaskRCNNTrainer, dtype_policy_scope

############################################################
#  A small graph layer used by the model builder
############################################################


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(Float32Layer):
    """Pixel boxes [B, N, 4] -> normalized boxes, using the image batch's height and width.

    Inputs: [boxes, images [B, H, W, C]].
    """

    def call(self, inputs):
        boxes, images = inputs
        return norm_boxes_graph(boxes, tf.shape(images)[1:3])

    def compute_output_shape(self, input_shape):
        return input_shape[0]


############################################################
#  The graph
############################################################


def build_graph(mode: str, config) -> keras.Model:
    """Build the Mask R-CNN graph for ``mode`` ("training" or "inference"); returns the Keras model.

    With ``config.MIXED_PRECISION`` set, the layers are created under that Keras dtype policy (restored
    afterwards, so other models are unaffected): convolutions compute in half precision with float32
    variables, while anchors, proposals, RoIAlign boxes, detection targets, detections, the heads' output
    layers and the losses stay float32.
    """
    _check_image_size(config)
    with dtype_policy_scope(config.MIXED_PRECISION):
        if mode == "training":
            return build_training_graph(config)
        return build_inference_graph(config)


def _check_image_size(config):
    h, w = config.IMAGE_SHAPE[:2]
    if h / 2**6 != int(h / 2**6) or w / 2**6 != int(w / 2**6):
        raise ValueError(
            "Image size must be divisible by 2 at least 6 times to avoid fractions when "
            "downscaling and upscaling: use 256, 320, 384, 448, 512, ... (got "
            f"{h}x{w})."
        )


def _image_inputs(config):
    channels = int(config.IMAGE_CHANNEL_COUNT)
    input_image = keras.Input(shape=[None, None, channels], name="input_image")
    input_image_meta = keras.Input(shape=[config.IMAGE_META_SIZE], name="input_image_meta")
    return input_image, input_image_meta


def _trunk(input_image, anchors, config, proposal_count):
    """Backbone, RPN and proposals, shared by both modes.

    Returns (rpn_class_logits [B, A, 2], rpn_class [B, A, 2], rpn_bbox [B, A, 4] deltas, rpn_rois
    [B, proposal_count, 4] normalized, mrcnn_feature_maps [P2, P3, P4, P5]).
    """
    P2, P3, P4, P5, P6 = build_backbone(input_image, config)
    rpn = build_rpn_model(
        config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), config.TOP_DOWN_PYRAMID_SIZE
    )
    level_outputs = [rpn(p) for p in [P2, P3, P4, P5, P6]]
    rpn_class_logits, rpn_class, rpn_bbox = [
        keras.layers.Concatenate(axis=1, name=name, dtype="float32")(
            [outputs[i] for outputs in level_outputs]
        )
        for i, name in enumerate(["rpn_class_logits", "rpn_class", "rpn_bbox"])
    ]
    rpn_rois = ProposalLayer(
        proposal_count=proposal_count, nms_threshold=config.RPN_NMS_THRESHOLD, name="ROI", config=config
    )([rpn_class, rpn_bbox, anchors])
    return rpn_class_logits, rpn_class, rpn_bbox, rpn_rois, [P2, P3, P4, P5]


def _classifier(rois, feature_maps, input_image_meta, config):
    return fpn_classifier_graph(
        rois,
        feature_maps,
        input_image_meta,
        config.POOL_SIZE,
        config.NUM_CLASSES,
        train_bn=bn_training(config),
        fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE,
    )


def build_inference_graph(config) -> keras.Model:
    """Inputs [input_image, input_image_meta, input_anchors (normalized [B, A, 4])]; outputs
    [detections [B, DETECTION_MAX_INSTANCES, 6] (y1, x1, y2, x2 normalized, class_id, score), mrcnn_class,
    mrcnn_bbox, mrcnn_mask [B, DMI, 28, 28, NUM_CLASSES], rpn_rois, rpn_class, rpn_bbox]."""
    input_image, input_image_meta = _image_inputs(config)
    input_anchors = keras.Input(shape=[None, 4], name="input_anchors")
    _, rpn_class, rpn_bbox, rpn_rois, feature_maps = _trunk(
        input_image, input_anchors, config, config.POST_NMS_ROIS_INFERENCE
    )
    _, mrcnn_class, mrcnn_bbox = _classifier(rpn_rois, feature_maps, input_image_meta, config)
    detections = DetectionLayer(config, name="mrcnn_detection")(
        [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta]
    )
    detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
    mrcnn_mask = build_fpn_mask_graph(
        detection_boxes,
        feature_maps,
        input_image_meta,
        config.MASK_POOL_SIZE,
        config.NUM_CLASSES,
        train_bn=bn_training(config),
        conv_layers_size=config.FPN_MASK_CONV_LAYERS_SIZE,
    )
    outputs = [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox]
    return keras.Model([input_image, input_image_meta, input_anchors], outputs, name="mask_rcnn")


def _training_inputs(config):
    """The ground-truth inputs of the training graph, in ``mrcnn.data.INPUT_NAMES`` order after the image
    and its meta: rpn_match, rpn_bbox, gt_class_ids, gt_boxes (pixels), gt_masks (mini or full size)."""
    if config.USE_MINI_MASK:
        mask_shape = [config.MINI_MASK_SHAPE[0], config.MINI_MASK_SHAPE[1], None]
    else:
        mask_shape = [int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1]), None]
    return [
        keras.Input(shape=[None, 1], name="input_rpn_match", dtype="int32"),
        keras.Input(shape=[None, 4], name="input_rpn_bbox", dtype="float32"),
        keras.Input(shape=[None], name="input_gt_class_ids", dtype="int32"),
        keras.Input(shape=[None, 4], name="input_gt_boxes", dtype="float32"),
        keras.Input(shape=mask_shape, name="input_gt_masks", dtype="bool"),
    ]


def build_training_graph(config) -> MaskRCNNTrainer:
    """Inputs: ``mrcnn.data.INPUT_NAMES`` (plus ``input_roi`` when USE_RPN_ROIS is False). Outputs: the
    heads' outputs, rpn_rois, output_rois, then the five losses (``losses.LOSS_NAMES`` order)."""
    input_image, input_image_meta = _image_inputs(config)
    ground_truth = _training_inputs(config)
    input_rpn_match, input_rpn_bbox, input_gt_class_ids, input_gt_boxes, input_gt_masks = ground_truth
    inputs = [input_image, input_image_meta, *ground_truth]
    gt_boxes = NormBoxes(name="norm_gt_boxes")([input_gt_boxes, input_image])

    anchors = anchor_layer(config)(input_image)
    rpn_class_logits, rpn_class, rpn_bbox, rpn_rois, feature_maps = _trunk(
        input_image, anchors, config, config.POST_NMS_ROIS_TRAINING
    )
    if config.USE_RPN_ROIS:
        target_rois = rpn_rois
    else:
        input_rois = keras.Input(shape=[config.POST_NMS_ROIS_TRAINING, 4], name="input_roi", dtype="int32")
        inputs.append(input_rois)
        target_rois = NormBoxes(name="norm_input_roi")([input_rois, input_image])

    rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(config, name="proposal_targets")(
        [target_rois, input_gt_class_ids, gt_boxes, input_gt_masks]
    )
    mrcnn_class_logits, mrcnn_class, mrcnn_bbox = _classifier(rois, feature_maps, input_image_meta, config)
    # The mask head only runs on the batch's positive RoIs (Matterport ran it on all RoIs and discarded
    # the negatives in the loss): same loss, a fraction of the mask-head work.
    mask_rois, mask_class_ids, mask_targets = PositiveRoiSlice(positive_quota(config), name="positive_rois")(
        [rois, target_class_ids, target_mask]
    )
    mask_features = PyramidROIAlign([config.MASK_POOL_SIZE] * 2, name="roi_align_mask")(
        [mask_rois, input_image_meta] + feature_maps
    )
    mask_class_ids, mask_features, mask_targets = PositiveRoiPack(name="positive_roi_pack")(
        [mask_class_ids, mask_features, mask_targets]
    )
    mrcnn_mask = fpn_mask_head(
        mask_features,
        config.NUM_CLASSES,
        train_bn=bn_training(config),
        conv_layers_size=config.FPN_MASK_CONV_LAYERS_SIZE,
    )
    output_rois = keras.layers.Identity(name="output_rois", dtype="float32")(rois)

    losses = [
        RPNClassLoss(name="rpn_class_loss")([input_rpn_match, rpn_class_logits]),
        RPNBboxLoss(name="rpn_bbox_loss")([input_rpn_bbox, input_rpn_match, rpn_bbox]),
        MrcnnClassLoss(name="mrcnn_class_loss")([target_class_ids, mrcnn_class_logits, input_image_meta]),
        MrcnnBboxLoss(name="mrcnn_bbox_loss")([target_bbox, target_class_ids, mrcnn_bbox]),
        MrcnnMaskLoss(name="mrcnn_mask_loss")([mask_targets, mask_class_ids, mrcnn_mask]),
    ]
    outputs = [
        rpn_class_logits,
        rpn_class,
        rpn_bbox,
        mrcnn_class_logits,
        mrcnn_class,
        mrcnn_bbox,
        mrcnn_mask,
        rpn_rois,
        output_rois,
        *losses,
    ]
    return MaskRCNNTrainer(
        inputs=inputs,
        outputs=outputs,
        name="mask_rcnn",
        loss_weights=config.LOSS_WEIGHTS,
        weight_decay=config.WEIGHT_DECAY,
    )
