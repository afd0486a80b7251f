"""mrcnn's CPU kernels, behind one switch and one chooser.

Each kernel computes a part of the model faster than TensorFlow's or Keras' generic kernel on CPU, with
the same result: Winograd 3x3 convolutions (``winograd``: F(2x2, 3x3); ``winograd4``: F(4x4, 3x3) for
inference), a sparse backward pass for the RPN's shared
convolution (``sparse_conv``), fused training-mode BatchNorm (``fused_bn``), whole-RoI convolutions as
matmuls (``roi_matmul``), blocked XLA NMS (``nms``) and a fused SGD update (``optimizer``).

The model's layers (``mrcnn.conv.Conv2D``, ``mrcnn.heads.RoiConv2D``, ``mrcnn.backbone.BatchNorm``,
``mrcnn.proposals.ProposalLayer``, ``mrcnn.training.build_optimizer``) name what they compute and ask
``select`` for the result; ``select`` is the only place that decides which kernel runs. Where a kernel
is faster on some CPUs and slower on others (the 3x3 convolutions), ``autotune`` times the candidates
once per shape and machine (``conv_timing`` builds the problems; ``cpu`` reads the CPU's flags).
``switch`` turns them all off for the process (``MRCNN_CPU_KERNELS=0``) or keeps a list of them on, and
the XLA-compiled ones (Winograd, the blocked NMS) off while a graph is traced inside ``disabled()``, as
the SavedModel export does. ``portable()`` also swaps RoIAlign's ``CropAndResize``, the detection NMS
and the proposal top-k for forms that ONNX, TFLite and OpenVINO run well (``portable_ops``), as their
exports need.
"""

from mrcnn.kernels.select import (
    batch_norm,
    conv2d,
    convolution,
    crop_and_resize,
    momentum_sgd,
    nms_indices,
    per_class_nms,
    per_roi_conv2d,
    top_k_indices,
    uses_sparse_gradient,
    uses_winograd,
)
from mrcnn.kernels.switch import disabled, enabled, is_portable, portable

__all__ = [
    "batch_norm",
    "conv2d",
    "convolution",
    "crop_and_resize",
    "disabled",
    "enabled",
    "is_portable",
    "momentum_sgd",
    "nms_indices",
    "per_class_nms",
    "per_roi_conv2d",
    "portable",
    "top_k_indices",
    "uses_sparse_gradient",
    "uses_winograd",
]
