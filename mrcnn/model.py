"""Mask R-CNN: the ``MaskRCNN`` class with Matterport's methods, and Matterport's public names.

``MaskRCNN`` ties the stages together; each lives in a module that reads alone: the graph in
``mrcnn.graph``, a training run in ``mrcnn.training``, batched inference in ``mrcnn.inference``, pre- and
post-processing in ``mrcnn.transform``, HDF5 weights in ``mrcnn.weights``. ``import mrcnn.model as
modellib`` also finds every other name of Matterport's ``mrcnn.model`` (graph builders, custom layers,
data pipeline functions, ``log``), re-exported from those modules.

Coordinates: boxes are (y1, x1, y2, x2). ``detect`` returns pixel boxes of the original image with
exclusive y2/x2; inside the graph boxes are normalized (``mrcnn.boxes.norm_boxes``).
"""

from __future__ import annotations

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
from mrcnn.config import Config
from mrcnn.data import data_generator, load_image_gt  # noqa: F401
from mrcnn.data_targets import build_detection_targets, build_rpn_targets, generate_random_rois  # noqa: F401
from mrcnn.detection import DetectionBoxes, DetectionLayer, refine_detections_graph  # noqa: F401
from mrcnn.graph import build_graph
from mrcnn.graph_ops import Float32Layer, batch_pack_graph, log2_graph, trim_zeros_graph  # noqa: F401
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph, fpn_mask_head  # noqa: F401
from mrcnn.inference import Detector
from mrcnn.losses import (  # noqa: F401
    mrcnn_bbox_loss_graph,
    mrcnn_class_loss_graph,
    mrcnn_mask_loss_graph,
    rpn_bbox_loss_graph,
    rpn_class_loss_graph,
    smooth_l1_loss,
)
from mrcnn.proposals import ProposalLayer  # noqa: F401
from mrcnn.roi_align import PyramidROIAlign  # noqa: F401
from mrcnn.rpn import build_rpn_model, rpn_graph  # noqa: F401
from mrcnn.targets import DetectionTargetLayer, detection_targets_graph  # noqa: F401
from mrcnn.training import (
    LAYER_PRESETS,
    build_optimizer,
    is_chief,
    training_callbacks,
    training_sequences,
    training_strategy,
)
from mrcnn.transform import (  # noqa: F401
    as_image_list,
    check_image,
    compose_image_meta,
    mold_image,
    mold_inputs,
    parse_image_meta,
    parse_image_meta_graph,
    paste_masks,
    unmold_detections,
    unmold_image,
)
from mrcnn.weights import WeightsReport, load_weights_hdf5, save_weights_hdf5

logger = logging.getLogger("mrcnn")


def log(text: str, array=None) -> None:
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

    def __init__(
        self,
        mode: str,
        config: Config,
        model_dir: str | os.PathLike,
        strategy: tf.distribute.Strategy | None = None,
    ):
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
        self._detector = None
        self.set_log_dir()
        self.strategy = strategy if strategy is not None or mode != "training" else training_strategy(config)
        with self._strategy_scope():
            self.keras_model = self.build(mode=mode, config=config)

    def _strategy_scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ graph
    def build(self, mode: str, config: Config) -> keras.Model:
        """Build the Mask R-CNN graph for ``mode``; returns the Keras model (``mrcnn.graph.build_graph``)."""
        return build_graph(mode, config)

    # ------------------------------------------------------------------ logs & weights
    def find_last(self) -> str:
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

    def set_log_dir(self, model_path: str | os.PathLike | None = None) -> None:
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

    def load_weights(
        self, filepath: str | os.PathLike, by_name: bool = False, exclude: list[str] | None = None
    ) -> WeightsReport:
        """Load HDF5 weights in Matterport's (Keras 2) layout, e.g. ``mask_rcnn_coco.h5``.

        Layers are always matched by name: Keras 3 orders graph layers differently from Keras 2, so
        Matterport's positional ``by_name=False`` would pair the wrong layers. ``by_name=False`` is strict
        instead: every weighted layer of the model must be in the file and vice versa.
        ``exclude``: layer names to skip (implies by_name); use it when NUM_CLASSES differs from the
        file's: ``exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]``.
        Continues the file's log directory and epoch count when it is one of our checkpoints.
        Returns the loader's report, a dict (``loaded``, ``tensors``, ``missing``, ``unused``,
        ``excluded``) whose repr is one line, so a notebook cell ending with this call stays short.
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

    def save_weights(self, filepath: str | os.PathLike) -> None:
        """Save weights in Matterport's HDF5 layout (written to a temporary file, then renamed)."""
        save_weights_hdf5(self.keras_model, filepath)

    def export(
        self,
        path: str | os.PathLike,
        format: str = "saved_model",
        masks: str = "full",
        overwrite: bool = False,
        quantize: str | None = None,
        verbose: int = 1,
    ) -> str:
        """Write the model for serving (inference mode only) in ``format``: "saved_model", "onnx",
        "tflite" or "openvino"; see ``mrcnn.export.export``.

        Every format takes uint8 images [batch, H, W, 3] of any size and returns post-processed
        detections in input-image pixels (``boxes``, ``class_ids``, ``scores``, ``num_detections``,
        ``masks``). Returns the absolute path of the written folder or file.
        """
        from mrcnn.export import export

        return export(
            self, path, format=format, masks=masks, overwrite=overwrite, quantize=quantize, verbose=verbose
        )

    def get_imagenet_weights(self) -> str:
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

    def get_trainable_layers(self) -> list:
        """Layers of the model that own weights."""
        layers = []
        for layer in self.keras_model.layers:
            layer = self.find_trainable_layer(layer)
            if layer.weights:
                layers.append(layer)
        return layers

    def set_trainable(
        self, layer_regex: str, keras_model: keras.Model | None = None, indent: int = 0, verbose: int = 1
    ) -> None:
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
    def compile(self, learning_rate: float, momentum: float) -> None:
        """Compile the Keras model with ``mrcnn.training.build_optimizer`` (SGD with momentum and per-tensor
        gradient clipping; loss scaling for "mixed_float16"), in the strategy's scope. The losses live in
        the model's ``train_step``."""
        with self._strategy_scope():
            optimizer = build_optimizer(self.config, learning_rate, momentum)
            self.keras_model.compile(optimizer=optimizer)
            # Keras defers this to the first train step when no strategy is set; variables created inside
            # that trace make tf.function trace the whole step a second time.
            optimizer.build(self.keras_model.trainable_variables)

    def train(
        self,
        train_dataset,
        val_dataset,
        learning_rate: float,
        epochs: int,
        layers: str,
        augmentation=None,
        custom_callbacks: list | None = None,
        no_augmentation_sources: list[str] | None = None,
        workers: int | None = None,
        verbose: int = 1,
        strategy: tf.distribute.Strategy | None = None,
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
        if self.mode != "training":
            raise ValueError("Create the model in training mode to train it: MaskRCNN(mode='training', ...).")
        if strategy is not None and strategy is not self.strategy:
            weights = self.keras_model.get_weights()
            self.strategy = strategy
            with self._strategy_scope():
                self.keras_model = self.build(mode="training", config=self.config)
            self.keras_model.set_weights(weights)
        layers = LAYER_PRESETS.get(layers, layers)
        replicas = self.strategy.num_replicas_in_sync if self.strategy is not None else 1
        train_data, val_data = training_sequences(
            self.config,
            train_dataset,
            val_dataset,
            self.strategy,
            augmentation=augmentation,
            no_augmentation_sources=no_augmentation_sources,
            workers=workers,
        )
        if is_chief(self.strategy):
            os.makedirs(self.log_dir, exist_ok=True)
        callbacks = training_callbacks(
            self.config, self.keras_model, self.log_dir, self.checkpoint_path, self.strategy, custom_callbacks
        )
        log(f"\nStarting at epoch {self.epoch}. LR={learning_rate}\n")
        if replicas > 1:
            log(f"Training on {replicas} replicas: global batch {train_data.batch_size} images")
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
    def mold_inputs(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resize and normalize images for the graph (``mrcnn.transform.mold_inputs``).

        images: list of [H, W, C] arrays. Returns (molded_images [N, h, w, C] float32,
        image_metas [N, IMAGE_META_SIZE] float32, windows [N, 4] int32 pixel windows).
        """
        return mold_inputs(images, self.config)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """One image's graph outputs -> (boxes, class_ids, scores, masks) in original pixels
        (``mrcnn.transform.unmold_detections``)."""
        return unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window)

    @property
    def detector(self) -> Detector:
        """The ``mrcnn.inference.Detector`` that runs this model's graph (created on first use)."""
        if self._detector is None:
            self._detector = Detector(
                self.keras_model, self.config, self.get_anchors, self.unmold_detections, log
            )
        return self._detector

    def detect(self, images: list[np.ndarray], verbose: int = 0) -> list[dict]:
        """Detect instances in a list of images ([H, W, C] arrays, any sizes, any count).

        Returns one dict per image: ``rois`` int32 [N, 4] (y1, x1, y2, x2, original pixels, exclusive
        y2/x2), ``class_ids`` int32 [N], ``scores`` float32 [N], ``masks`` bool [H, W, N]. Unlike
        Matterport, ``len(images)`` need not equal BATCH_SIZE: images are batched internally by molded
        shape, BATCH_SIZE at a time.
        """
        if self.mode != "inference":
            raise ValueError("Create the model in inference mode to detect: MaskRCNN(mode='inference', ...).")
        images = [check_image(image, self.config, index) for index, image in enumerate(as_image_list(images))]
        if verbose:
            log(f"Processing {len(images)} images")
            for image in images:
                log("image", image)
        # One at a time: in "pad64" and "none" modes images of different sizes mold to different shapes.
        molded = [self.mold_inputs([image]) for image in images]
        molded_images, image_metas, windows = ([m[k][0] for m in molded] for k in range(3))
        return self.detector.detect_molded_batches(images, molded_images, image_metas, windows, verbose)

    def detect_molded(
        self, molded_images: np.ndarray, image_metas: np.ndarray, verbose: int = 0
    ) -> list[dict]:
        """Detect on images already molded (resized and normalized); the molded image is the original."""
        if self.mode != "inference":
            raise ValueError("Create the model in inference mode to detect: MaskRCNN(mode='inference', ...).")
        molded_images = np.asarray(molded_images, dtype=np.float32)
        image_metas = np.asarray(image_metas, dtype=np.float32)
        if molded_images.ndim != 4 or len(image_metas) != len(molded_images):
            raise ValueError("detect_molded needs molded_images [N, H, W, C] and image_metas [N, META].")
        h, w = molded_images.shape[1:3]
        windows = np.tile(np.array([[0, 0, h, w]], dtype=np.int32), (len(molded_images), 1))
        return self.detector.detect_molded_batches(
            list(molded_images), molded_images, image_metas, windows, verbose
        )

    def get_anchors(self, image_shape) -> np.ndarray:
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

    def run_graph(self, images, outputs: list, image_metas: np.ndarray | None = None) -> OrderedDict:
        """Run the inference graph on ``images`` and return the named intermediate outputs.

        outputs: list of (name, KerasTensor) pairs taken from ``self.keras_model`` (e.g.
        ``("proposals", model.keras_model.get_layer("ROI").output)``). Returns an OrderedDict of arrays.
        """
        model = self.keras_model
        images = as_image_list(images)
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
