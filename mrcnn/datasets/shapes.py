"""Synthetic "shapes" dataset: squares, circles and triangles on a plain background, and its configs.

Small enough to train Mask R-CNN on a laptop in minutes; useful for tests and tutorials. Image specs
(background colour and shapes) are generated up front by ``load_shapes``; pixels and masks are drawn on
demand with scikit-image. Shape dims are (x, y, s): centre column, centre row and half size in pixels.
``ShapesFastConfig`` with ``small_backbone`` trains from scratch on a CPU; ``mrcnn.shapes_demo`` and
``mrcnn demo`` use it.
"""

import math

import numpy as np
import skimage.draw

from mrcnn.boxes import non_max_suppression
from mrcnn.config import Config
from mrcnn.datasets.base import Dataset

SHAPE_NAMES = ("square", "circle", "triangle")


class ShapesConfig(Config):
    """Configuration for training on the synthetic shapes dataset (128x128 images, 3 classes)."""

    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 8
    NUM_CLASSES = 1 + 3  # background + square, circle, triangle
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)  # small objects need small anchors
    TRAIN_ROIS_PER_IMAGE = 32  # few objects per image
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5


class ShapesDataset(Dataset):
    """Generates images of 1-4 random shapes (classes "square", "circle", "triangle", source "shapes").

    Randomness comes from a numpy Generator: pass ``seed`` to ``load_shapes`` for a reproducible set.
    """

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self._rng = np.random.default_rng()

    def load_shapes(self, count, height, width, seed=None):
        """Register ``count`` images of ``height`` x ``width`` pixels with randomly generated specs.

        seed: int or None; the same seed gives the same images, masks and classes. Call ``prepare()``
        afterwards. Images need height and width >= 24 (shapes are kept away from the border).
        """
        if min(height, width) < 24:
            raise ValueError(f"shapes images must be at least 24x24 pixels, got {height}x{width}")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        for class_id, name in enumerate(SHAPE_NAMES, start=1):
            self.add_class("shapes", class_id, name)
        for i in range(count):
            bg_color, shapes = self.random_image(height, width)
            self.add_image(
                "shapes", image_id=i, path=None, width=width, height=height, bg_color=bg_color, shapes=shapes
            )

    def load_image(self, image_id):
        """Draw the image: uint8 RGB [height, width, 3], later shapes painted over earlier ones."""
        info = self._check_image_id(image_id)
        image = np.empty((info["height"], info["width"], 3), dtype=np.uint8)
        image[:] = np.asarray(info["bg_color"], dtype=np.uint8)
        for shape, color, dims in info["shapes"]:
            self.draw_shape(image, shape, dims, color)
        return image

    def image_reference(self, image_id):
        """The image's list of (shape, color, dims) for "shapes" images; else the base reference."""
        info = self._check_image_id(image_id)
        if info["source"] == "shapes":
            return info["shapes"]
        return super().image_reference(image_id)

    def load_mask(self, image_id):
        """Instance masks: (bool [height, width, N], int32 class ids [N]).

        Later shapes occlude earlier ones (as in ``load_image``); shapes fully hidden are dropped.
        """
        info = self._check_image_id(image_id)
        shapes = info["shapes"]
        height, width = info["height"], info["width"]
        mask = np.zeros((height, width, len(shapes)), dtype=bool)
        for i, (shape, _, dims) in enumerate(shapes):
            mask[:, :, i] = self.draw_shape(np.zeros((height, width), dtype=bool), shape, dims, True)
        covered = np.zeros((height, width), dtype=bool)
        for i in range(len(shapes) - 1, -1, -1):
            mask[:, :, i] &= ~covered
            covered |= mask[:, :, i]
        visible = mask.any(axis=(0, 1))
        class_ids = np.array([SHAPE_NAMES.index(s[0]) + 1 for s in shapes], dtype=np.int32)
        return mask[:, :, visible], class_ids[visible]

    def draw_shape(self, image, shape, dims, color):
        """Paint ``shape`` ("square", "circle" or "triangle") with dims (x, y, s) into ``image`` in place.

        image: [H, W] or [H, W, C]; color: a scalar or one value per channel. Square: side 2s + 1 centred
        at (y, x); circle: radius s; triangle: apex s above the centre, base s below and 2s/sin(60°)
        wide. Pixels outside the image are clipped. Returns ``image``.
        """
        x, y, s = dims
        extent = image.shape[:2]
        if shape == "square":
            rr, cc = skimage.draw.rectangle((y - s, x - s), end=(y + s, x + s), shape=extent)
        elif shape == "circle":
            rr, cc = skimage.draw.disk((y, x), s, shape=extent)
        elif shape == "triangle":
            half_base = s / np.sin(np.radians(60))
            rr, cc = skimage.draw.polygon(
                [y - s, y + s, y + s], [x, x - half_base, x + half_base], shape=extent
            )
        else:
            raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPE_NAMES}")
        image[rr, cc] = color
        return image

    def random_shape(self, height, width):
        """A random shape spec for a ``height`` x ``width`` image: (name, (r, g, b) color, (x, y, s)).

        The centre stays ``buffer`` pixels (20 on 128-px images) away from the border and s is drawn
        from [buffer, min(height, width) // 4].
        """
        rng = self._rng
        shape = SHAPE_NAMES[rng.integers(len(SHAPE_NAMES))]
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        buffer = min(20, min(height, width) // 6)
        y = int(rng.integers(buffer, height - buffer))
        x = int(rng.integers(buffer, width - buffer))
        s = int(rng.integers(buffer, max(buffer, min(height, width) // 4) + 1))
        return shape, color, (x, y, s)

    def random_image(self, height, width):
        """A random image spec: ((r, g, b) background, [(shape, color, dims), ...] with 1-4 shapes).

        Shapes whose boxes overlap an earlier-kept one with IoU > 0.3 are removed (NMS) to limit occlusion.
        """
        rng = self._rng
        bg_color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        shapes = [self.random_shape(height, width) for _ in range(int(rng.integers(1, 5)))]
        boxes = np.array([[y - s, x - s, y + s, x + s] for _, _, (x, y, s) in shapes], dtype=np.float32)
        keep = non_max_suppression(boxes, np.arange(len(shapes)), 0.3)
        return bg_color, [shapes[i] for i in sorted(keep)]


############################################################
#  A small backbone for training from scratch on a CPU
############################################################

SMALL_BACKBONE_WIDTHS = (32, 48, 64, 96, 128)


def small_backbone(input_image, stage5=True, train_bn=None):
    """A small 11-conv network returning [C1..C5] at strides 2, 4, 8, 16, 32 (resnet_graph's signature).

    Widths 32/48/64/96/128: about 1/40 of ResNet-50's compute, enough for flat-coloured shapes and
    trainable from scratch on a CPU in minutes (pretrained weights cannot be downloaded offline).
    """
    import keras

    from mrcnn.backbone import BatchNorm
    from mrcnn.conv import Conv2D

    def conv_bn_relu(x, filters, strides, name):
        x = Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
        x = BatchNorm(name=name + "_bn")(x, training=train_bn)
        return keras.layers.Activation("relu", name=name + "_relu")(x)

    x = conv_bn_relu(input_image, SMALL_BACKBONE_WIDTHS[0], 2, "small_c1")
    stages = [x]
    for level, width in enumerate(SMALL_BACKBONE_WIDTHS[1:], start=2):
        x = conv_bn_relu(x, width, 2, f"small_c{level}a")
        x = conv_bn_relu(x, width, 1, f"small_c{level}b")
        stages.append(x)
    return stages


def small_backbone_shapes(image_shape):
    """Feature map sizes [[h, w], ...] of P2..P6 for ``image_shape`` (strides 4..64)."""
    return np.array(
        [[math.ceil(image_shape[0] / s), math.ceil(image_shape[1] / s)] for s in (4, 8, 16, 32, 64)]
    )


class ShapesFastConfig(ShapesConfig):
    """ShapesConfig tuned to train from scratch on a CPU in minutes (used by the command line).

    Small backbone (``small_backbone``) with trained BatchNorm, a 64-channel pyramid, a 256-wide box
    head, a 64-channel mask head (Matterport's 256 channels make most of a CPU training step; figures
    in benchmarks/README.md), fewer proposals and a 20x higher learning rate than Matterport's
    fine-tuning default (0.02: learns about 1.4x more per image than 0.01 from scratch).
    """

    BACKBONE = small_backbone
    COMPUTE_BACKBONE_SHAPE = small_backbone_shapes
    TRAIN_BN = True
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    FPN_MASK_CONV_LAYERS_SIZE = 64
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 300
    POST_NMS_ROIS_INFERENCE = 100
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MAX_GT_INSTANCES = 8
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.5
    LEARNING_RATE = 0.02


class ShapesInferenceConfig(ShapesFastConfig):
    """ShapesFastConfig for detection: batches of 8 images (the demo's evaluation batch)."""

    IMAGES_PER_GPU = 8


def make_dataset(count, seed, size=128):
    """A prepared ``ShapesDataset`` of ``count`` ``size`` x ``size`` images generated from ``seed``."""
    dataset = ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset
