"""On/off switch for mrcnn's XLA-compiled CPU kernels.

Two parts of the graph have faster CPU forms compiled with XLA (``jit_compile``): the 3x3 convolutions
by Winograd's F(2x2, 3x3) (``mrcnn.winograd``) and the proposal layer's greedy NMS (``mrcnn.nms``). Both
compute what TensorFlow's own kernels compute (Winograd to float32 rounding, NMS exactly). They are used
when a graph is traced on a machine where TensorFlow sees no GPU, outside a ``disabled()`` block.
``export_saved_model`` traces inside one, so exported SavedModels need no XLA at serving time.
"""

import contextlib
import functools

import tensorflow as tf

_state = {"enabled": True}


@contextlib.contextmanager
def disabled():
    """Within this block, graphs traced by mrcnn use TensorFlow's plain convolution and NMS kernels."""
    previous = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = previous


def enabled():
    """True when a graph traced now may use the XLA-compiled CPU kernels (not disabled, no GPU visible)."""
    return _state["enabled"] and not _gpu_visible()


@functools.cache
def _gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))
