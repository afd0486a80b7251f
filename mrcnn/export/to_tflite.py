"""TFLite / LiteRT export: the portable serving graph in float32, TFLite builtin ops only (no Flex)."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import tensorflow as tf

from mrcnn import kernels
from mrcnn.export import probe, saved_model, staging
from mrcnn.export.runtimes import require
from mrcnn.export.serving import ServingModule, check_exportable

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN


def export_tflite(
    model: MaskRCNN,
    path: str | os.PathLike,
    masks: str = "full",
    overwrite: bool = False,
    quantize: str | None = None,
    verbose: int = 1,
) -> str:
    """Write ``model`` (inference mode) as a ``.tflite`` flatbuffer; returns its absolute path.

    The serving graph is traced inside ``mrcnn.kernels.portable()`` with float32 pre/post-processing
    (TFLite has no float64 kernels), saved as a temporary SavedModel and converted with TFLite's builtin
    op set only, so ``ai_edge_litert.interpreter.Interpreter`` runs it without the Flex delegate. Its
    signature ``serving_default`` has input ``images`` and the outputs of ``mrcnn.export.serving``.
    quantize: None (float32 weights), "float16" (float16 weights, computed in float32) or
    "dynamic_int8" (int8 weights, dynamic-range quantized matmuls and convolutions).
    """
    check_exportable(model, masks, ("full", "boxes"))
    interpreter_module = require("ai_edge_litert.interpreter", "Checking the TFLite export")
    path = staging.destination(path, overwrite, ".tflite")
    with kernels.portable(), tempfile.TemporaryDirectory(prefix="mrcnn-tflite-") as workdir:
        module = ServingModule(model, dtype=tf.float32)
        signatures = saved_model.serving_signatures(module, masks)
        saved_model.save(module, signatures, workdir)
        converter = tf.lite.TFLiteConverter.from_saved_model(workdir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    with staging.staged(path) as staged_file:
        with open(staged_file, "wb") as file:
            file.write(flatbuffer)
        interpreter = interpreter_module.Interpreter(model_path=staged_file)
        outputs = interpreter.get_signature_runner("serving_default")(images=probe.probe_image(model.config))
        probe.check_outputs(outputs, model.config, masks, "LiteRT")
    if verbose:
        size = len(flatbuffer) / 2**20
        print(
            f"Saved the TFLite model ({size:.1f} MB, builtin ops only, quantize={quantize}) to {path}: "
            f"signature 'serving_default', input 'images' uint8 [batch, height, width, "
            f"{int(model.config.IMAGE_CHANNEL_COUNT)}]; masks={masks!r}."
        )
    return path
