"""Mask R-CNN: the ``MaskRCNN`` wrapper around the Keras 3 graph, with Matterport's public names.

``import mrcnn.model as modellib`` finds every name of Matterport's ``mrcnn.model``: the wrapper class,
the graph builders and custom layers (defined in one module per stage and re-exported here), the data
pipeline functions and ``log``.

Coordinates: boxes are (y1, x1, y2, x2). ``detect`` returns pixel boxes of the original image with
exclusive y2/x2; inside the graph boxes are normalized (``utils.norm_boxes``).
"""

import contextlib
import datetime
import errno
import logging
import os
import re
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf

from mrcnn import utils
from mrcnn.anchors import config_anchors
from mrcnn.backbone import (  # noqa: F401  (re-exported contract names)
    BatchNorm,
    bn_training,
    build_backbone,
    compute_backbone_shapes,
    conv_block,
    fpn_graph,
    identity_block,
    resnet_graph,
)
from mrcnn.boxes import (  # noqa: F401
    apply_box_deltas_graph,
    clip_boxes_graph,
    denorm_boxes_graph,
    norm_boxes_graph,
    overlaps_graph,
)
from mrcnn.data import (  # noqa: F401
    compose_image_meta,
    data_generator,
    load_image_gt,
    mold_image,
    parse_image_meta,
    unmold_image,
)
from mrcnn.data_targets import build_detection_targets, build_rpn_targets, generate_random_rois  # noqa: F401
from mrcnn.detection import DetectionBoxes, DetectionLayer, refine_detections_graph  # noqa: F401
from mrcnn.graph_ops import (  # noqa: F401
    Float32Layer,
    batch_pack_graph,
    log2_graph,
    parse_image_meta_graph,
    trim_zeros_graph,
)
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph, fpn_mask_head  # noqa: F401
from mrcnn.losses import (  # noqa: F401
    mrcnn_bbox_loss_graph,
    mrcnn_class_loss_graph,
    mrcnn_mask_loss_graph,
    rpn_bbox_loss_graph,
    rpn_class_loss_graph,
    smooth_l1_loss,
)
from mrcnn.optimizer import ClippedMomentumSGD
from mrcnn.proposals import ProposalLayer
from mrcnn.roi_align import PyramidROIAlign
from mrcnn.rpn import anchor_layer, build_rpn_model, rpn_graph  # noqa: F401
from mrcnn.targets import (  # noqa: F401
    DetectionTargetLayer,
    PositiveRoiPack,
    PositiveRoiSlice,
    detection_targets_graph,
    positive_quota,
)
from mrcnn.training import (
    HDF5Checkpoint,
    MaskRCNNTrainer,
    MrcnnBboxLoss,
    MrcnnClassLoss,
    MrcnnMaskLoss,
    RPNBboxLoss,
    RPNClassLoss,
    StopOnNonFiniteLoss,
    dtype_policy_scope,
    is_chief,
    shared_seed,
    training_strategy,
)
from mrcnn.weights import load_weights_hdf5, save_weights_hdf5

logger = logging.getLogger("mrcnn")

# Layer-name regexes of the train(layers=...) presets (full match against layer names).
_HEADS = r"(mrcnn_.*)|(rpn_.*)|(fpn_.*)"
LAYER_PRESETS = {
    "heads": _HEADS,
    "3+": r"(res[3-5].*)|(bn[3-5].*)|" + _HEADS,
    "4+": r"(res[4-5].*)|(bn[4-5].*)|" + _HEADS,
    "5+": r"(res5.*)|(bn5.*)|" + _HEADS,
    "all": ".*",
}


def log(text, array=None):
    """Print ``text``; with an array, also its shape, min, max and dtype (Matterport's format)."""
    if array is not None:
        text = text.ljust(25)
        array = np.asarray(array)
        if array.size:
            text += f"shape: {str(array.shape):20}  min: {array.min():10.5f}  max: {array.max():10.5f}"
        else:
            text += f"shape: {str(array.shape):20}  min: {'':10}  max: {'':10}"
        text += f"  {array.dtype}"
    print(text)


############################################################
#  Small graph layers used by the model builder
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
#  MaskRCNN
############################################################


class MaskRCNN:
    """Mask R-CNN model: builds the Keras graph and runs training and inference.

    ``self.keras_model`` is the Keras 3 functional model. ``mode`` is "training" or "inference".

    ``strategy`` (training only, beyond Matterport): a ``tf.distribute`` strategy to train under. The
    default, ``mrcnn.training.training_strategy(config)``, is MultiWorkerMirroredStrategy when TF_CONFIG
    is set, MirroredStrategy when GPU_COUNT > 1, else None (one device). The Keras model and its
    optimizer are created inside the strategy's scope; ``self.strategy`` holds it. See
    docs/distributed.md.
    """

    def __init__(self, mode, config, model_dir, strategy=None):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}.")
        if mode == "training" and config.NUM_CLASSES < 2:
            raise ValueError(
                f"NUM_CLASSES={config.NUM_CLASSES}: training needs background plus at least one "
                "class; set NUM_CLASSES = 1 + the number of your classes."
            )
        if mode == "inference" and strategy is not None:
            raise ValueError(
                "strategy= is for training; an inference model runs on one device (create it "
                "without strategy)."
            )
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self._inference_fn = None
        self.set_log_dir()
        self.strategy = strategy if strategy is not None or mode != "training" else training_strategy(config)
        with self._strategy_scope():
            self.keras_model = self.build(mode=mode, config=config)

    def _strategy_scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ graph
    def build(self, mode, config):
        """Build the Mask R-CNN graph for ``mode``; returns the Keras model.

        With ``config.MIXED_PRECISION`` set, the layers are created under that Keras dtype policy
        (restored afterwards, so other models are unaffected): convolutions compute in half precision
        with float32 variables, while anchors, proposals, RoIAlign boxes, detection targets, detections,
        the heads' output layers and the losses stay float32. The model carries the config as
        ``keras_model.mrcnn_config`` (callbacks such as ``mrcnn.evaluate.EvaluationCallback`` read it).
        """
        with dtype_policy_scope(config.MIXED_PRECISION):
            model = self._build_graph(mode, config)
        model.mrcnn_config = config
        return model

    def _build_graph(self, mode, config):
        h, w = config.IMAGE_SHAPE[:2]
        if h / 2**6 != int(h / 2**6) or w / 2**6 != int(w / 2**6):
            raise ValueError(
                "Image size must be divisible by 2 at least 6 times to avoid fractions when "
                "downscaling and upscaling: use 256, 320, 384, 448, 512, ... (got "
                f"{h}x{w})."
            )
        channels = int(config.IMAGE_CHANNEL_COUNT)
        input_image = keras.Input(shape=[None, None, channels], name="input_image")
        input_image_meta = keras.Input(shape=[config.IMAGE_META_SIZE], name="input_image_meta")

        if mode == "training":
            input_rpn_match = keras.Input(shape=[None, 1], name="input_rpn_match", dtype="int32")
            input_rpn_bbox = keras.Input(shape=[None, 4], name="input_rpn_bbox", dtype="float32")
            input_gt_class_ids = keras.Input(shape=[None], name="input_gt_class_ids", dtype="int32")
            input_gt_boxes = keras.Input(shape=[None, 4], name="input_gt_boxes", dtype="float32")
            gt_boxes = NormBoxes(name="norm_gt_boxes")([input_gt_boxes, input_image])
            if config.USE_MINI_MASK:
                mask_shape = [config.MINI_MASK_SHAPE[0], config.MINI_MASK_SHAPE[1], None]
            else:
                mask_shape = [int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1]), None]
            input_gt_masks = keras.Input(shape=mask_shape, name="input_gt_masks", dtype="bool")
        else:
            input_anchors = keras.Input(shape=[None, 4], name="input_anchors")

        P2, P3, P4, P5, P6 = build_backbone(input_image, config)
        rpn_feature_maps = [P2, P3, P4, P5, P6]
        mrcnn_feature_maps = [P2, P3, P4, P5]

        anchors = anchor_layer(config)(input_image) if mode == "training" else input_anchors

        rpn = build_rpn_model(
            config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), config.TOP_DOWN_PYRAMID_SIZE
        )
        level_outputs = [rpn(p) for p in rpn_feature_maps]
        rpn_class_logits, rpn_class, rpn_bbox = [
            keras.layers.Concatenate(axis=1, name=name, dtype="float32")(
                [outputs[i] for outputs in level_outputs]
            )
            for i, name in enumerate(["rpn_class_logits", "rpn_class", "rpn_bbox"])
        ]

        proposal_count = (
            config.POST_NMS_ROIS_TRAINING if mode == "training" else config.POST_NMS_ROIS_INFERENCE
        )
        rpn_rois = ProposalLayer(
            proposal_count=proposal_count, nms_threshold=config.RPN_NMS_THRESHOLD, name="ROI", config=config
        )([rpn_class, rpn_bbox, anchors])

        if mode == "training":
            inputs = [
                input_image,
                input_image_meta,
                input_rpn_match,
                input_rpn_bbox,
                input_gt_class_ids,
                input_gt_boxes,
                input_gt_masks,
            ]
            if config.USE_RPN_ROIS:
                target_rois = rpn_rois
            else:
                input_rois = keras.Input(
                    shape=[config.POST_NMS_ROIS_TRAINING, 4], name="input_roi", dtype="int32"
                )
                inputs.append(input_rois)
                target_rois = NormBoxes(name="norm_input_roi")([input_rois, input_image])

            rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
                config, name="proposal_targets"
            )([target_rois, input_gt_class_ids, gt_boxes, input_gt_masks])

            mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
                rois,
                mrcnn_feature_maps,
                input_image_meta,
                config.POOL_SIZE,
                config.NUM_CLASSES,
                train_bn=bn_training(config),
                fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE,
            )
            # The mask head only runs on the batch's positive RoIs (Matterport ran it on all RoIs and
            # discarded the negatives in the loss): same loss, a fraction of the mask-head work.
            mask_rois, mask_class_ids, mask_targets = PositiveRoiSlice(
                positive_quota(config), name="positive_rois"
            )([rois, target_class_ids, target_mask])
            mask_features = PyramidROIAlign([config.MASK_POOL_SIZE] * 2, name="roi_align_mask")(
                [mask_rois, input_image_meta] + mrcnn_feature_maps
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

            rpn_class_loss = RPNClassLoss(name="rpn_class_loss")([input_rpn_match, rpn_class_logits])
            rpn_bbox_loss = RPNBboxLoss(name="rpn_bbox_loss")([input_rpn_bbox, input_rpn_match, rpn_bbox])
            class_loss = MrcnnClassLoss(name="mrcnn_class_loss")(
                [target_class_ids, mrcnn_class_logits, input_image_meta]
            )
            bbox_loss = MrcnnBboxLoss(name="mrcnn_bbox_loss")([target_bbox, target_class_ids, mrcnn_bbox])
            mask_loss = MrcnnMaskLoss(name="mrcnn_mask_loss")([mask_targets, mask_class_ids, mrcnn_mask])

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
                rpn_class_loss,
                rpn_bbox_loss,
                class_loss,
                bbox_loss,
                mask_loss,
            ]
            return MaskRCNNTrainer(
                inputs=inputs,
                outputs=outputs,
                name="mask_rcnn",
                loss_weights=config.LOSS_WEIGHTS,
                weight_decay=config.WEIGHT_DECAY,
            )

        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
            rpn_rois,
            mrcnn_feature_maps,
            input_image_meta,
            config.POOL_SIZE,
            config.NUM_CLASSES,
            train_bn=bn_training(config),
            fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE,
        )
        detections = DetectionLayer(config, name="mrcnn_detection")(
            [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta]
        )
        detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
        mrcnn_mask = build_fpn_mask_graph(
            detection_boxes,
            mrcnn_feature_maps,
            input_image_meta,
            config.MASK_POOL_SIZE,
            config.NUM_CLASSES,
            train_bn=bn_training(config),
            conv_layers_size=config.FPN_MASK_CONV_LAYERS_SIZE,
        )
        outputs = [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox]
        return keras.Model([input_image, input_image_meta, input_anchors], outputs, name="mask_rcnn")

    # ------------------------------------------------------------------ logs & weights
    def find_last(self):
        """Path of the last checkpoint of the newest log directory of this config's NAME.

        Raises FileNotFoundError when there is no such directory or no weights file in it.
        """
        key = self.config.NAME.lower() if self.config.NAME else ""
        dir_names = (
            sorted(d for d in next(os.walk(self.model_dir))[1] if d.startswith(key))
            if os.path.isdir(self.model_dir)
            else []
        )
        if not dir_names:
            raise FileNotFoundError(errno.ENOENT, f"Could not find model directory under {self.model_dir}")
        dir_name = os.path.join(self.model_dir, dir_names[-1])
        checkpoints = sorted(
            f for f in next(os.walk(dir_name))[2] if f.startswith("mask_rcnn") and f.endswith(".h5")
        )
        if not checkpoints:
            raise FileNotFoundError(errno.ENOENT, f"Could not find weight files in {dir_name}")
        return os.path.join(dir_name, checkpoints[-1])

    def set_log_dir(self, model_path=None):
        """Set ``log_dir``, ``checkpoint_path`` and ``epoch``; continue a run when given one of its files.

        A path like ``.../<name>YYYYMMDDTHHMM/mask_rcnn_<name>_NNNN.h5`` resumes that directory at epoch
        NNNN (training continues with epoch NNNN + 1). Any other path starts a new directory at epoch 0.
        """
        self.epoch = 0
        now = datetime.datetime.now()
        if model_path:
            pattern = (
                r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]"
                r"mask_rcnn_[\w-]+(\d{4})\.h5"
            )
            match = re.match(pattern, str(model_path))
            if match:
                now = datetime.datetime(*map(int, match.groups()[:5]))
                self.epoch = int(match.group(6))
                print(f"Re-starting from epoch {self.epoch}")
        name = self.config.NAME.lower() if self.config.NAME else ""
        self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M}")
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_*epoch*.h5").replace(
            "*epoch*", "{epoch:04d}"
        )

    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load HDF5 weights in Matterport's (Keras 2) layout, e.g. ``mask_rcnn_coco.h5``.

        Layers are always matched by name: Keras 3 orders graph layers differently from Keras 2, so
        Matterport's positional ``by_name=False`` would pair the wrong layers. ``by_name=False`` is strict
        instead: every weighted layer of the model must be in the file and vice versa.
        ``exclude``: layer names to skip (implies by_name); use it when NUM_CLASSES differs from the
        file's: ``exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]``.
        Continues the file's log directory and epoch count when it is one of our checkpoints.
        Returns the loader's report (``loaded``, ``tensors``, ``missing``, ``unused``, ``excluded``).
        """
        if exclude:
            by_name = True
        report = load_weights_hdf5(self.keras_model, filepath, by_name=True, exclude=exclude)
        if not by_name and (report["missing"] or report["unused"]):
            raise ValueError(
                f"{filepath} does not match this model layer for layer: missing in the file "
                f"{report['missing'][:5]}, not in the model {report['unused'][:5]}. Load with by_name=True "
                "(and exclude=[...] for layers whose shapes differ) to load the layers that match."
            )
        if report["missing"]:
            logger.info("Layers not in %s (left as initialized): %s", filepath, report["missing"])
        self.set_log_dir(filepath)
        return report

    def save_weights(self, filepath):
        """Save weights in Matterport's HDF5 layout (written to a temporary file, then renamed)."""
        save_weights_hdf5(self.keras_model, filepath)

    def export(self, export_dir, masks="full", overwrite=False, verbose=1):
        """Write a SavedModel for serving (inference mode only); see ``mrcnn.export.export_saved_model``.

        Its ``serving_default`` signature takes uint8 images [batch, H, W, 3] of any size and returns
        post-processed detections in input-image pixels. Returns the absolute export path.
        """
        from mrcnn.export import export_saved_model

        return export_saved_model(self, export_dir, masks=masks, overwrite=overwrite, verbose=verbose)

    def get_imagenet_weights(self):
        """Download (once) and return the path of ImageNet ResNet-50 weights (Keras' notop file)."""
        url = (
            "https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        )
        return keras.utils.get_file(
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            url,
            cache_subdir="models",
            file_hash="a268eb855778b3df3c7506639542a6af",
        )

    # ------------------------------------------------------------------ trainable layers
    def find_trainable_layer(self, layer):
        """Unwrap TimeDistributed wrappers (kept for API compatibility; our graph has none)."""
        while isinstance(layer, keras.layers.TimeDistributed):
            layer = layer.layer
        return layer

    def get_trainable_layers(self):
        """Layers of the model that own weights."""
        layers = []
        for layer in self.keras_model.layers:
            layer = self.find_trainable_layer(layer)
            if layer.weights:
                layers.append(layer)
        return layers

    def set_trainable(self, layer_regex, keras_model=None, indent=0, verbose=1):
        """Make layers whose names fully match ``layer_regex`` trainable and freeze the rest."""
        if verbose > 0 and keras_model is None:
            log("Selecting layers to train")
        keras_model = keras_model or self.keras_model
        for layer in keras_model.layers:
            if isinstance(layer, keras.Model):
                if verbose > 0:
                    print("In model: ", layer.name)
                self.set_trainable(layer_regex, keras_model=layer, indent=indent + 4, verbose=verbose)
                continue
            if not layer.weights:
                continue
            trainable = bool(re.fullmatch(layer_regex, layer.name))
            self.find_trainable_layer(layer).trainable = trainable
            if trainable and verbose > 0:
                log(f"{' ' * indent}{layer.name:20}   ({layer.__class__.__name__})")
        if isinstance(keras_model, keras.Model) and keras_model is not self.keras_model:
            keras_model.trainable = any(layer.trainable for layer in keras_model.layers if layer.weights)

    # ------------------------------------------------------------------ training
    def compile(self, learning_rate, momentum):
        """SGD with momentum and per-tensor gradient clipping (``mrcnn.optimizer.ClippedMomentumSGD``: Keras'
        SGD, fused); the losses live in the model's ``train_step``.

        Created in the strategy's scope. With MIXED_PRECISION "mixed_float16" the SGD is wrapped in a
        ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling; bfloat16 needs none).
        """
        with self._strategy_scope():
            optimizer = ClippedMomentumSGD(
                learning_rate=learning_rate, momentum=momentum, clipnorm=self.config.GRADIENT_CLIP_NORM
            )
            if self.config.MIXED_PRECISION == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.keras_model.compile(optimizer=optimizer)
            # Keras defers this to the first train step when no strategy is set; variables created inside
            # that trace make tf.function trace the whole step a second time (about 7 s for ResNet-50).
            optimizer.build(self.keras_model.trainable_variables)

    def train(
        self,
        train_dataset,
        val_dataset,
        learning_rate,
        epochs,
        layers,
        augmentation=None,
        custom_callbacks=None,
        no_augmentation_sources=None,
        workers=None,
        verbose=1,
        strategy=None,
    ):
        """Train up to epoch ``epochs`` (cumulative) the layers selected by ``layers``.

        ``layers``: a regex full-matched against layer names, or a preset: "heads", "3+", "4+", "5+",
        "all". ``augmentation``: a callable ``(image, masks) -> (image, masks)`` (see ``mrcnn.augment``)
        or an imgaug augmenter. One checkpoint per epoch goes to ``self.checkpoint_path``.
        Beyond Matterport: ``workers`` input threads (default: up to 4), Keras' ``verbose``, and
        ``strategy``: a ``tf.distribute`` strategy other than the model's (``self.strategy``) rebuilds the
        graph in its scope with the current weights and trains under it from then on.

        Each step takes a global batch of IMAGES_PER_GPU x replicas images (replicas: the strategy's
        ``num_replicas_in_sync``, 1 without one), split evenly over the replicas; STEPS_PER_EPOCH counts
        global steps. Under a multi-worker strategy every worker reads the same image order (a seed agreed
        with the chief) and takes its slice; only the chief writes checkpoints and TensorBoard logs.
        """
        from mrcnn.data import MaskRCNNSequence

        if self.mode != "training":
            raise ValueError("Create the model in training mode to train it: MaskRCNN(mode='training', ...).")
        if strategy is not None and strategy is not self.strategy:
            weights = self.keras_model.get_weights()
            self.strategy = strategy
            with self._strategy_scope():
                self.keras_model = self.build(mode="training", config=self.config)
            self.keras_model.set_weights(weights)
        layers = LAYER_PRESETS.get(layers, layers)
        if workers is None:
            workers = max(1, min(4, (os.cpu_count() or 1)))
        replicas = self.strategy.num_replicas_in_sync if self.strategy is not None else 1
        batch_size = self.config.IMAGES_PER_GPU * replicas
        seed = shared_seed(self.strategy)
        train_data = MaskRCNNSequence(
            train_dataset,
            self.config,
            shuffle=True,
            augmentation=augmentation,
            no_augmentation_sources=no_augmentation_sources,
            batch_size=batch_size,
            steps=self.config.STEPS_PER_EPOCH,
            workers=workers,
            seed=seed,
        )
        val_data = MaskRCNNSequence(
            val_dataset,
            self.config,
            shuffle=True,
            batch_size=batch_size,
            steps=self.config.VALIDATION_STEPS,
            workers=workers,
            seed=seed + 1,
        )
        callbacks = [StopOnNonFiniteLoss()]
        if is_chief(self.strategy):
            os.makedirs(self.log_dir, exist_ok=True)
            callbacks = [
                keras.callbacks.TensorBoard(log_dir=self.log_dir, histogram_freq=0, write_graph=False),
                HDF5Checkpoint(self.checkpoint_path, save_weights_hdf5, self.keras_model),
            ] + callbacks
        callbacks += list(custom_callbacks or [])
        log(f"\nStarting at epoch {self.epoch}. LR={learning_rate}\n")
        if replicas > 1:
            log(f"Training on {replicas} replicas: global batch {batch_size} images")
        log(f"Checkpoint Path: {self.checkpoint_path}")
        self.set_trainable(layers)
        self.compile(learning_rate, self.config.LEARNING_MOMENTUM)
        if self.epoch >= epochs:
            log(f"Already trained to epoch {self.epoch} >= {epochs}: nothing to do.")
            return
        history = self.keras_model.fit(
            train_data,
            initial_epoch=self.epoch,
            epochs=epochs,
            steps_per_epoch=self.config.STEPS_PER_EPOCH,
            callbacks=callbacks,
            validation_data=val_data,
            validation_steps=self.config.VALIDATION_STEPS,
            verbose=verbose,
        )
        if history.epoch:
            # Epochs actually finished (a callback such as StopAfterMinutes may end training early).
            self.epoch = max(self.epoch, history.epoch[-1] + 1)

    # ------------------------------------------------------------------ inference
    def mold_inputs(self, images):
        """Resize and normalize images for the graph.

        images: list of [H, W, C] arrays. Returns (molded_images [N, h, w, C] float32,
        image_metas [N, IMAGE_META_SIZE] float32, windows [N, 4] int32 pixel windows).
        """
        molded_images, image_metas, windows = [], [], []
        for image in images:
            molded, window, scale, _, _ = utils.resize_image(
                image,
                min_dim=self.config.IMAGE_MIN_DIM,
                min_scale=self.config.IMAGE_MIN_SCALE,
                max_dim=self.config.IMAGE_MAX_DIM,
                mode=self.config.IMAGE_RESIZE_MODE,
            )
            molded = mold_image(molded, self.config)
            meta = compose_image_meta(
                0,
                image.shape,
                molded.shape,
                window,
                scale,
                np.zeros([self.config.NUM_CLASSES], dtype=np.int32),
            )
            molded_images.append(molded)
            windows.append(window)
            image_metas.append(meta)
        return (
            np.stack(molded_images).astype(np.float32),
            np.stack(image_metas).astype(np.float32),
            np.stack(windows).astype(np.int32),
        )

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """Turn one image's graph outputs into (boxes, class_ids, scores, masks) in original pixels.

        detections: [DMI, 6] normalized (y1, x1, y2, x2, class_id, score), zero padded.
        mrcnn_mask: [DMI, h, w, NUM_CLASSES]. Returns boxes int32 [N, 4] (exclusive y2/x2), class_ids
        int32 [N], scores float32 [N], masks bool [H, W, N] (bool also when N = 0, unlike Matterport's
        float64 empty array).
        """
        zero_ix = np.where(detections[:, 4] == 0)[0]
        count = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        boxes = detections[:count, :4]
        class_ids = detections[:count, 4].astype(np.int32)
        scores = detections[:count, 5].astype(np.float32)
        masks = mrcnn_mask[np.arange(count), :, :, class_ids]

        wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window), image_shape[:2])
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
        boxes = utils.denorm_boxes((boxes - shift) / scale, original_image_shape[:2])

        keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
        boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
        full_masks = paste_masks(masks, boxes, original_image_shape[:2])
        return boxes.astype(np.int32), class_ids, scores, full_masks

    def _run_inference(self, molded_images, image_metas, anchors):
        if self._inference_fn is None:
            model = self.keras_model
            spec = [
                tf.TensorSpec([None, None, None, int(self.config.IMAGE_CHANNEL_COUNT)], tf.float32),
                tf.TensorSpec([None, int(self.config.IMAGE_META_SIZE)], tf.float32),
                tf.TensorSpec([None, None, 4], tf.float32),
            ]

            @tf.function(input_signature=spec, autograph=False)
            def infer(images, metas, anchors):
                return model([images, metas, anchors], training=False)

            self._inference_fn = infer
        outputs = self._inference_fn(
            tf.constant(molded_images), tf.constant(image_metas), tf.constant(anchors)
        )
        return [o.numpy() for o in outputs]

    def detect(self, images, verbose=0):
        """Detect instances in a list of images ([H, W, C] arrays, any sizes, any count).

        Returns one dict per image: ``rois`` int32 [N, 4] (y1, x1, y2, x2, original pixels, exclusive
        y2/x2), ``class_ids`` int32 [N], ``scores`` float32 [N], ``masks`` bool [H, W, N]. Unlike
        Matterport, ``len(images)`` need not equal BATCH_SIZE: images are batched internally by molded
        shape, BATCH_SIZE at a time.
        """
        if self.mode != "inference":
            raise ValueError("Create the model in inference mode to detect: MaskRCNN(mode='inference', ...).")
        images = [_check_image(image, self.config, index) for index, image in enumerate(_as_list(images))]
        if verbose:
            log(f"Processing {len(images)} images")
            for image in images:
                log("image", image)
        molded_images, image_metas, windows = self.mold_inputs(images)
        return self._detect_molded_batches(images, molded_images, image_metas, windows, verbose)

    def _detect_molded_batches(self, images, molded_images, image_metas, windows, verbose):
        results = [None] * len(images)
        by_shape = OrderedDict()
        for index, molded in enumerate(molded_images):
            by_shape.setdefault(molded.shape, []).append(index)
        batch = max(1, int(self.config.BATCH_SIZE))
        for shape, indices in by_shape.items():
            anchors = self.get_anchors(shape)
            for start in range(0, len(indices), batch):
                chunk = indices[start : start + batch]
                chunk_anchors = np.broadcast_to(anchors, (len(chunk),) + anchors.shape)
                if verbose:
                    log("molded_images", molded_images[chunk])
                    log("image_metas", image_metas[chunk])
                    log("anchors", chunk_anchors)
                detections, _, _, mrcnn_mask, _, _, _ = self._run_inference(
                    molded_images[chunk], image_metas[chunk], chunk_anchors
                )
                for row, index in enumerate(chunk):
                    rois, class_ids, scores, masks = self.unmold_detections(
                        detections[row],
                        mrcnn_mask[row],
                        images[index].shape,
                        molded_images[index].shape,
                        windows[index],
                    )
                    results[index] = {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (resized and normalized); the molded image is the original."""
        if self.mode != "inference":
            raise ValueError("Create the model in inference mode to detect: MaskRCNN(mode='inference', ...).")
        molded_images = np.asarray(molded_images, dtype=np.float32)
        image_metas = np.asarray(image_metas, dtype=np.float32)
        if molded_images.ndim != 4 or len(image_metas) != len(molded_images):
            raise ValueError("detect_molded needs molded_images [N, H, W, C] and image_metas [N, META].")
        h, w = molded_images.shape[1:3]
        windows = np.tile(np.array([[0, 0, h, w]], dtype=np.int32), (len(molded_images), 1))
        return self._detect_molded_batches(list(molded_images), molded_images, image_metas, windows, verbose)

    def get_anchors(self, image_shape):
        """Normalized pyramid anchors [A, 4] for a molded image shape; pixels in ``self.anchors``.

        Both are read-only arrays from ``mrcnn.anchors``' cache."""
        self.anchors, normalized = config_anchors(self.config, image_shape)
        return normalized

    def ancestor(self, tensor, name, checked=None):
        """Not available in Keras 3 (no TF1 graph to walk): use ``keras_model.get_layer(name).output``."""
        raise NotImplementedError(
            "ancestor() walked the TF1 graph; in Keras 3 use "
            "model.keras_model.get_layer(name).output instead."
        )

    def run_graph(self, images, outputs, image_metas=None):
        """Run the inference graph on ``images`` and return the named intermediate outputs.

        outputs: list of (name, KerasTensor) pairs taken from ``self.keras_model`` (e.g.
        ``("proposals", model.keras_model.get_layer("ROI").output)``). Returns an OrderedDict of arrays.
        """
        model = self.keras_model
        images = _as_list(images)
        if image_metas is None:
            molded_images, image_metas, _ = self.mold_inputs(images)
        else:
            molded_images = np.asarray(images, dtype=np.float32)
        image_shape = molded_images[0].shape
        anchors = np.broadcast_to(
            self.get_anchors(image_shape), (len(molded_images),) + self.get_anchors(image_shape).shape
        )
        probe = keras.Model(model.inputs, [tensor for _, tensor in outputs])
        values = probe([molded_images, np.asarray(image_metas, np.float32), anchors], training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        result = OrderedDict((name, np.asarray(value)) for (name, _), value in zip(outputs, values))
        for name, value in result.items():
            log(name, value)
        return result


############################################################
#  Mask pasting and input checks
############################################################


def _interpolation_matrix(start, stop, size, length):
    """Bilinear weights [stop - start, size + 2] that resample a zero-padded axis of ``size`` samples
    over the pixel span [start, stop) of a box of ``length`` pixels (pixel centres aligned, like a
    constant-mode resize of the mask to the box)."""
    pixels = np.arange(start, stop, dtype=np.float32)
    coords = (pixels + 0.5) * (size / length) - 0.5 + 1.0  # +1: the zero padding sample
    coords = np.clip(coords, 0.0, size + 1.0)
    low = np.minimum(np.floor(coords).astype(np.int64), size)
    frac = coords - low
    weights = np.zeros((len(pixels), size + 2), dtype=np.float32)
    rows = np.arange(len(pixels))
    weights[rows, low] = 1.0 - frac
    weights[rows, low + 1] += frac
    return weights


def paste_masks(masks, boxes, image_shape, threshold=0.5):
    """Paste small float masks into full-size images.

    masks: [N, h, w] float in [0, 1]; boxes: [N, 4] int pixel boxes (exclusive y2/x2) relative to the box
    of the image; image_shape: (H, W). Returns bool [H, W, N] (a transposed view of an [N, H, W] array):
    each mask bilinearly resampled over its box and thresholded at ``threshold``, as Matterport's
    ``unmold_mask``. Each instance costs two small matrix products over its box only, instead of a
    scikit-image resize.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    masks = np.asarray(masks, dtype=np.float32)
    count = len(masks)
    out = np.zeros((count, height, width), dtype=bool)
    if count == 0:
        return out.transpose(1, 2, 0)
    mh, mw = masks.shape[1:3]
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    boxes = np.asarray(boxes).astype(np.int64)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        ys, ye = max(y1, 0), min(y2, height)
        xs, xe = max(x1, 0), min(x2, width)
        if ye <= ys or xe <= xs:
            continue
        rows = _interpolation_matrix(ys - y1, ye - y1, mh, y2 - y1)
        cols = _interpolation_matrix(xs - x1, xe - x1, mw, x2 - x1)
        out[i, ys:ye, xs:xe] = (rows @ padded[i] @ cols.T) >= threshold
    return out.transpose(1, 2, 0)


def _as_list(images):
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("detect() takes a list of images; wrap a single image as [image].")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"detect() takes a list of images ([H, W, C] arrays), got {type(images).__name__}.")
    if not images:
        raise ValueError("detect() was given no images.")
    return list(images)


def _check_image(image, config, index):
    """Validate one input image; grayscale / RGBA become RGB when the model expects 3 channels."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"Image {index} is a {type(image).__name__}; give a numpy array [H, W, C].")
    channels = int(config.IMAGE_CHANNEL_COUNT)
    if image.ndim == 2 and channels == 3:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 4 and channels == 3:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != channels:
        raise ValueError(
            f"Image {index} has shape {image.shape}; the model expects [H, W, {channels}] "
            f"(IMAGE_CHANNEL_COUNT={channels})."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Image {index} is empty (shape {image.shape}).")
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise TypeError(f"Image {index} has dtype {image.dtype}; give uint8 (0..255) or float pixels.")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise ValueError(f"Image {index} contains NaN or infinite pixels.")
    return image
