"""ResNet-50/101 backbone and Feature Pyramid Network (Keras 3 functional builders).

Layer names follow Matterport's Mask R-CNN exactly (``conv1``, ``bn_conv1``, ``res4b_branch2a``,
``bn4b_branch2a``, ``fpn_c5p5``, ``fpn_p2``, ...) so that Matterport's published ``mask_rcnn_coco.h5``
and its ``exclude=[...]`` / ``set_trainable`` regular expressions keep working.

All tensors are channels-last ``[batch, height, width, channels]`` float32. For an input of
``H x W`` the feature maps C2..C5 and P2..P6 have spatial sizes ``ceil(H / s) x ceil(W / s)`` with
``s`` in ``BACKBONE_STRIDES`` = 4, 8, 16, 32, 64; the top-down FPN additions need H and W to be
multiples of 64.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from mrcnn import kernels
from mrcnn.conv import Conv2D

RESNET_ARCHITECTURES = {"resnet50": 5, "resnet101": 22}
"""Number of identity blocks of stage 4 for each supported ResNet depth."""


def config_callable(config, name: str):
    """``config.<name>`` as a plain callable: a function set as a class attribute comes back as a
    method bound to the config; unbind it so it is called with the documented arguments only."""
    value = getattr(config, name)
    if getattr(value, "__self__", None) is config and hasattr(value, "__func__"):
        return value.__func__
    return value


def compute_backbone_shapes(config, image_shape) -> np.ndarray:
    """Spatial sizes of the pyramid levels for an input image.

    Args:
        config: a Config; uses BACKBONE, BACKBONE_STRIDES and (callable BACKBONE) COMPUTE_BACKBONE_SHAPE.
        image_shape: ``(H, W[, C])`` of the molded image.

    Returns:
        int array ``[len(BACKBONE_STRIDES), 2]`` of ``[ceil(H / s), ceil(W / s)]`` per stride ``s``; for a
        callable BACKBONE, whatever ``config.COMPUTE_BACKBONE_SHAPE(image_shape)`` returns.
    """
    if callable(config.BACKBONE):
        compute = config_callable(config, "COMPUTE_BACKBONE_SHAPE")
        if not callable(compute):
            raise ValueError(
                "config.BACKBONE is a callable, so config.COMPUTE_BACKBONE_SHAPE must be set to a function "
                "image_shape -> [[height, width] per pyramid level]."
            )
        return compute(image_shape)
    if config.BACKBONE not in RESNET_ARCHITECTURES:
        raise ValueError(
            f"config.BACKBONE {config.BACKBONE!r} is not supported; use one of "
            f"{sorted(RESNET_ARCHITECTURES)} or a callable with COMPUTE_BACKBONE_SHAPE."
        )
    height, width = image_shape[:2]
    return np.array([[math.ceil(height / s), math.ceil(width / s)] for s in config.BACKBONE_STRIDES])


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch normalization whose ``training`` argument, given while building a graph, is kept.

    ``call(inputs, training=None)`` forwards ``training``: None follows the enclosing model's mode,
    False always uses the moving mean/variance (frozen BN, Matterport's ``TRAIN_BN=False``), True always
    uses batch statistics and updates the moving ones.

    Keras 3 differs from Keras 2 here: a functional model called with ``training=True`` (as ``fit``
    does) passes that value to every layer and overrides the ``training=False`` recorded when the graph
    was built. To keep Matterport's semantics this layer pins an explicit boolean ``training`` given
    with a symbolic (KerasTensor) input and uses it in every later call, whatever the model's mode. The
    pin is part of the graph, so it survives ``Model.get_config`` / ``from_config`` and ``.keras``
    saving. A layer called symbolically several times keeps the last explicit value.

    Created inside the scope of a ``tf.distribute`` strategy with several replicas, the layer defaults
    to ``synchronized=True``: batch statistics (TRAIN_BN=True) are those of the global batch, as on
    one device, not of each replica's slice.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "synchronized",
            tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1,
        )
        super().__init__(*args, **kwargs)
        self._pinned_training = None

    def __call__(self, inputs, *args, **kwargs):
        training = kwargs.get("training")
        if isinstance(training, bool) and keras.backend.is_keras_tensor(inputs):
            self._pinned_training = training
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None):
        if self._pinned_training is not None:
            training = self._pinned_training
        return kernels.batch_norm(self, inputs, training, default=super().call)


def _bottleneck(input_tensor, kernel_size, filters, stage, block, strides, shortcut, use_bias, train_bn):
    """Shared body of identity_block / conv_block; ``shortcut`` is the tensor added to branch 2."""
    filters1, filters2, filters3 = filters
    conv_name = f"res{stage}{block}_branch"
    bn_name = f"bn{stage}{block}_branch"

    x = keras.layers.Conv2D(filters1, (1, 1), strides=strides, use_bias=use_bias, name=conv_name + "2a")(
        input_tensor
    )
    x = BatchNorm(name=bn_name + "2a")(x, training=train_bn)
    x = keras.layers.Activation("relu", name=conv_name + "2a_relu")(x)

    # mrcnn's Conv2D: Keras' layer and weights; a 3x3 kernel may run by Winograd (mrcnn.kernels.select)
    x = Conv2D(
        filters2, (kernel_size, kernel_size), padding="same", use_bias=use_bias, name=conv_name + "2b"
    )(x)
    x = BatchNorm(name=bn_name + "2b")(x, training=train_bn)
    x = keras.layers.Activation("relu", name=conv_name + "2b_relu")(x)

    x = keras.layers.Conv2D(filters3, (1, 1), use_bias=use_bias, name=conv_name + "2c")(x)
    x = BatchNorm(name=bn_name + "2c")(x, training=train_bn)

    if shortcut is None:
        shortcut = keras.layers.Conv2D(
            filters3, (1, 1), strides=strides, use_bias=use_bias, name=conv_name + "1"
        )(input_tensor)
        shortcut = BatchNorm(name=bn_name + "1")(shortcut, training=train_bn)

    x = keras.layers.Add(name=f"res{stage}{block}_add")([x, shortcut])
    return keras.layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def identity_block(input_tensor, kernel_size, filters, stage, block, use_bias=True, train_bn=True):
    """ResNet bottleneck block whose shortcut is the input itself.

    Args:
        input_tensor: ``[B, H, W, filters[2]]`` KerasTensor (channels must equal ``filters[2]``).
        kernel_size: side of the middle convolution (3 in ResNet).
        filters: ``(f1, f2, f3)`` output channels of the 1x1, kxk and 1x1 convolutions.
        stage: stage number (2..5), block: block letter ('a', 'b', ...); used in the layer names
            ``res{stage}{block}_branch2a/2b/2c``, ``bn{stage}{block}_branch2a/2b/2c``,
            ``res{stage}{block}_add`` and ``res{stage}{block}_out`` (final ReLU).
        use_bias: whether the convolutions have a bias.
        train_bn: ``training`` argument of the BatchNorm layers (see :class:`BatchNorm`).

    Returns:
        ``[B, H, W, f3]`` KerasTensor.
    """
    return _bottleneck(
        input_tensor, kernel_size, filters, stage, block, (1, 1), input_tensor, use_bias, train_bn
    )


def conv_block(
    input_tensor, kernel_size, filters, stage, block, strides=(2, 2), use_bias=True, train_bn=True
):
    """ResNet bottleneck block with a projection shortcut (``res{stage}{block}_branch1`` + its BN).

    The stride is applied by the first 1x1 convolution (``..._branch2a``) and by the shortcut, as in
    Matterport (and the original Caffe ResNet). Same arguments as :func:`identity_block` plus
    ``strides``; output ``[B, ceil(H / sy), ceil(W / sx), f3]``.
    """
    return _bottleneck(input_tensor, kernel_size, filters, stage, block, strides, None, use_bias, train_bn)


def resnet_graph(input_image, architecture, stage5=False, train_bn=True):
    """Build ResNet-50 or ResNet-101 on ``input_image`` and return its stage outputs.

    Args:
        input_image: ``[B, H, W, C]`` float32 KerasTensor (molded image).
        architecture: "resnet50" or "resnet101".
        stage5: build stage 5 (C5); when False, C5 is None.
        train_bn: ``training`` argument of every BatchNorm (False = frozen BN).

    Returns:
        ``[C1, C2, C3, C4, C5]``: C1 ``[B, H/4, W/4, 64]`` (after the stem's max-pool), C2 ``H/4`` with 256
        channels, C3 ``H/8`` 512, C4 ``H/16`` 1024, C5 ``H/32`` 2048 (sizes rounded up).
    """
    if architecture not in RESNET_ARCHITECTURES:
        raise ValueError(
            f"Unknown ResNet architecture {architecture!r}; use one of {sorted(RESNET_ARCHITECTURES)} "
            "or give a callable BACKBONE."
        )
    # Stage 1 (stem).
    x = keras.layers.ZeroPadding2D((3, 3), name="conv1_pad")(input_image)
    x = keras.layers.Conv2D(64, (7, 7), strides=(2, 2), use_bias=True, name="conv1")(x)
    x = BatchNorm(name="bn_conv1")(x, training=train_bn)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    C1 = x = keras.layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name="pool1")(x)
    # Stage 2.
    x = conv_block(x, 3, [64, 64, 256], stage=2, block="a", strides=(1, 1), train_bn=train_bn)
    x = identity_block(x, 3, [64, 64, 256], stage=2, block="b", train_bn=train_bn)
    C2 = x = identity_block(x, 3, [64, 64, 256], stage=2, block="c", train_bn=train_bn)
    # Stage 3.
    x = conv_block(x, 3, [128, 128, 512], stage=3, block="a", train_bn=train_bn)
    for block in "bcd":
        x = identity_block(x, 3, [128, 128, 512], stage=3, block=block, train_bn=train_bn)
    C3 = x
    # Stage 4: blocks b.. are lettered chr(98 + i).
    x = conv_block(x, 3, [256, 256, 1024], stage=4, block="a", train_bn=train_bn)
    for i in range(RESNET_ARCHITECTURES[architecture]):
        x = identity_block(x, 3, [256, 256, 1024], stage=4, block=chr(98 + i), train_bn=train_bn)
    C4 = x
    # Stage 5.
    if stage5:
        x = conv_block(x, 3, [512, 512, 2048], stage=5, block="a", train_bn=train_bn)
        x = identity_block(x, 3, [512, 512, 2048], stage=5, block="b", train_bn=train_bn)
        C5 = identity_block(x, 3, [512, 512, 2048], stage=5, block="c", train_bn=train_bn)
    else:
        C5 = None
    return [C1, C2, C3, C4, C5]


def fpn_graph(C2, C3, C4, C5, pyramid_size):
    """Feature Pyramid Network top-down pathway.

    Args:
        C2..C5: backbone stage outputs, each half the size of the previous one.
        pyramid_size: channel depth of every P level (config.TOP_DOWN_PYRAMID_SIZE).

    Returns:
        ``[P2, P3, P4, P5, P6]``, each ``[B, h, w, pyramid_size]``: P5 = fpn_p5(fpn_c5p5(C5)),
        Pk = fpn_pk(upsample2x(P(k+1) before its 3x3) + fpn_ckpk(Ck)) for k = 4, 3, 2 (nearest-neighbour
        upsampling), and P6 = P5[:, ::2, ::2] (``fpn_p6``: 1x1 max-pool, stride 2), used by the RPN only.
        The 3x3 convolutions ``fpn_p2``..``fpn_p5`` are ``mrcnn.conv.Conv2D``: Keras' Conv2D, whose kernel
        ``mrcnn.kernels`` chooses.
    """
    conv = keras.layers.Conv2D
    P5 = conv(pyramid_size, (1, 1), name="fpn_c5p5")(C5)
    P4 = keras.layers.Add(name="fpn_p4add")(
        [
            keras.layers.UpSampling2D(size=(2, 2), name="fpn_p5upsampled")(P5),
            conv(pyramid_size, (1, 1), name="fpn_c4p4")(C4),
        ]
    )
    P3 = keras.layers.Add(name="fpn_p3add")(
        [
            keras.layers.UpSampling2D(size=(2, 2), name="fpn_p4upsampled")(P4),
            conv(pyramid_size, (1, 1), name="fpn_c3p3")(C3),
        ]
    )
    P2 = keras.layers.Add(name="fpn_p2add")(
        [
            keras.layers.UpSampling2D(size=(2, 2), name="fpn_p3upsampled")(P3),
            conv(pyramid_size, (1, 1), name="fpn_c2p2")(C2),
        ]
    )
    P2 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p2")(P2)
    P3 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p3")(P3)
    P4 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p4")(P4)
    P5 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p5")(P5)
    P6 = keras.layers.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(P5)
    return [P2, P3, P4, P5, P6]


def bn_training(config):
    """The ``training`` argument for BatchNorm layers under ``config.TRAIN_BN``.

    TRAIN_BN False -> False: frozen BN (moving statistics always). TRAIN_BN True -> None: batch
    statistics while training, moving statistics in inference. (Matterport passed True, so a model
    built with TRAIN_BN=True also used batch statistics at inference time; fixed here.)
    """
    return None if config.TRAIN_BN else False


def build_backbone(input_image, config):
    """Backbone + FPN for ``input_image`` as configured; returns ``[P2, P3, P4, P5, P6]``.

    ``config.BACKBONE`` "resnet50"/"resnet101" builds :func:`resnet_graph` with ``stage5=True`` and
    ``train_bn=bn_training(config)``. A callable BACKBONE is called like resnet_graph without the
    architecture: ``BACKBONE(input_image, stage5=True, train_bn=bn_training(config))`` and must return
    ``[C1, C2, C3, C4, C5]`` (C1 is ignored) with strides 4, 8, 16, 32 for C2..C5; a plain function set as
    a Config class attribute is called unbound. The pyramid has ``config.TOP_DOWN_PYRAMID_SIZE`` channels.
    """
    if callable(config.BACKBONE):
        stages = config_callable(config, "BACKBONE")(input_image, stage5=True, train_bn=bn_training(config))
        if not isinstance(stages, (list, tuple)) or len(stages) != 5 or any(c is None for c in stages[1:]):
            raise ValueError(
                "A callable config.BACKBONE must return [C1, C2, C3, C4, C5] (C1 may be None) like "
                f"resnet_graph(..., stage5=True); got {stages!r}."
            )
    else:
        stages = resnet_graph(input_image, config.BACKBONE, stage5=True, train_bn=bn_training(config))
    _, C2, C3, C4, C5 = stages
    return fpn_graph(C2, C3, C4, C5, config.TOP_DOWN_PYRAMID_SIZE)
