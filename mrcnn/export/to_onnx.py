"""ONNX export: the portable serving graph converted by tf2onnx, checked with onnx and onnxruntime."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import TYPE_CHECKING

import tensorflow as tf

from mrcnn import kernels
from mrcnn.export import probe, staging
from mrcnn.export.runtimes import require
from mrcnn.export.serving import ServingModule, check_exportable

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN

OPSET = 17
"""ONNX opset of the exported model (NonMaxSuppression, GatherND, ScatterND, TopK, Loop all exist there)."""


def export_onnx(
    model: MaskRCNN,
    path: str | os.PathLike,
    masks: str = "full",
    overwrite: bool = False,
    verbose: int = 1,
) -> str:
    """Write ``model`` (inference mode) as an ONNX file (opset ``OPSET``); returns its absolute path.

    The serving graph is traced inside ``mrcnn.kernels.portable()`` with float64 pre/post-processing
    (ONNX has float64), converted by tf2onnx, checked with ``onnx.checker`` and one onnxruntime run, and
    then renamed into place. Input ``images`` uint8 [B, H, W, C]; outputs as ``mrcnn.export.serving``.
    """
    check_exportable(model, masks, ("full", "boxes"))
    tf2onnx = require("tf2onnx", "The ONNX export")
    onnx = require("onnx", "The ONNX export")
    onnxruntime = require("onnxruntime", "Checking the ONNX export")
    path = staging.destination(path, overwrite, ".onnx")
    with kernels.portable():
        module = ServingModule(model, dtype=tf.float64)
        function = module.detect_full if masks == "full" else module.detect_boxes
        spec = [
            tf.TensorSpec([None, None, None, int(model.config.IMAGE_CHANNEL_COUNT)], tf.uint8, name="images")
        ]
        with staging.staged(path) as staged_file:
            with _quiet(verbose):
                tf2onnx.convert.from_function(
                    function, input_signature=spec, opset=OPSET, output_path=staged_file
                )
            onnx.checker.check_model(staged_file)
            session = onnxruntime.InferenceSession(staged_file, providers=["CPUExecutionProvider"])
            names = [output.name for output in session.get_outputs()]
            values = session.run(None, {"images": probe.probe_image(model.config)})
            probe.check_outputs(dict(zip(names, values)), model.config, masks, "onnxruntime")
    if verbose:
        print(
            f"Saved the ONNX model (opset {OPSET}) to {path}: input 'images' uint8 [batch, height, width, "
            f"{int(model.config.IMAGE_CHANNEL_COUNT)}]; outputs {', '.join(sorted(names))}; masks={masks!r}."
        )
    return path


@contextlib.contextmanager
def _quiet(verbose: int):
    """tf2onnx logs every rewrite at INFO and prints to stdout; keep that for verbose >= 2."""
    if verbose >= 2:
        yield
        return
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
