"""The one switch of mrcnn's CPU kernels.

The kernels are on unless one of these turns them off:
- the environment variable ``MRCNN_CPU_KERNELS`` (read once per process): ``0`` turns all off, a
  comma-separated list of ``KERNELS`` names keeps only those on (``MRCNN_CPU_KERNELS=winograd,nms``), and
  ``1`` or unset keeps all on; ``MRCNN_WINOGRAD=0``, its older name for ``0``, still works and warns;
- for the two XLA-compiled kernels (Winograd and the blocked NMS) also: a ``disabled()`` block, for
  graphs traced inside it (``export_saved_model`` traces its SavedModel inside one, so exported graphs
  need no XLA at serving time), and a GPU visible to TensorFlow (cuDNN and TensorFlow's GPU NMS choose
  their own algorithms). ``enabled()`` answers for these; ``enabled_by_environment()`` for the rest.

``portable()`` is ``disabled()`` and more: graphs traced inside it use only ops that ONNX (through
tf2onnx), TFLite's builtin op set and OpenVINO all have (``is_portable()`` answers), as the ONNX, TFLite
and OpenVINO exports need.
"""

import contextlib
import functools
import os
import warnings

import tensorflow as tf

_state = {"enabled": True, "portable": False}

# The kernels' names in MRCNN_CPU_KERNELS (modules of mrcnn.kernels).
KERNELS = ("winograd", "sparse_conv", "fused_bn", "roi_matmul", "nms", "optimizer")


@functools.cache
def _kernels_from_environment() -> frozenset:
    if os.environ.get("MRCNN_WINOGRAD") == "0":
        warnings.warn(
            "MRCNN_WINOGRAD=0 is deprecated: it now turns off all of mrcnn's CPU kernels; "
            "use MRCNN_CPU_KERNELS=0.",
            FutureWarning,
            stacklevel=3,
        )
        return frozenset()
    value = os.environ.get("MRCNN_CPU_KERNELS", "1").strip()
    if value in ("1", ""):
        return frozenset(KERNELS)
    if value == "0":
        return frozenset()
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(KERNELS))
    if unknown:
        raise ValueError(
            f"MRCNN_CPU_KERNELS names unknown kernels {unknown}: use 0, 1 or a comma-separated list of "
            f"{', '.join(KERNELS)}."
        )
    return frozenset(names)


def enabled_by_environment(kernel: str | None = None) -> bool:
    """False when MRCNN_CPU_KERNELS turns ``kernel`` (one of ``KERNELS``; None: all of them) off."""
    on = _kernels_from_environment()
    return bool(on) if kernel is None else kernel in on


@contextlib.contextmanager
def disabled():
    """Within this block, graphs traced by mrcnn use no XLA-compiled kernel (Winograd, blocked NMS)."""
    previous = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = previous


@contextlib.contextmanager
def portable():
    """Within this block, graphs traced by mrcnn use neither XLA kernels nor ops that some runtime lacks:
    RoI crops by gathers instead of ``CropAndResize``, per-class NMS by ``NonMaxSuppressionV4``."""
    previous = _state["portable"]
    _state["portable"] = True
    try:
        with disabled():
            yield
    finally:
        _state["portable"] = previous


def is_portable() -> bool:
    """True while a graph is traced inside ``portable()``."""
    return _state["portable"]


def enabled(kernel: str | None = None) -> bool:
    """True when a graph traced now may use the XLA-compiled kernels (``kernel``: "winograd" or "nms";
    None: any): not switched off, no GPU visible."""
    return _state["enabled"] and enabled_by_environment(kernel) and not _gpu_visible()


@functools.cache
def _gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))
