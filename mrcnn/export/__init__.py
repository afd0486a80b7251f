"""Export an inference ``MaskRCNN`` for serving: SavedModel, ONNX, TFLite/LiteRT or OpenVINO IR.

``export(model, path, format=...)`` (also ``MaskRCNN.export`` and ``mrcnn export --format``) writes one
model that takes raw images and returns finished detections, with the same signature in every format:
input ``images`` uint8 [batch, height, width, 3]; outputs ``boxes``, ``class_ids``, ``scores``,
``num_detections`` and ``masks`` (see ``mrcnn.export.serving``). The pre- and post-processing are
``mrcnn.transform``'s TensorFlow forms, traced with the network into one graph:

- ``saved_model``: TensorFlow's kernels (``mrcnn.kernels.disabled()``), float64 pre/post-processing;
- ``onnx``: traced inside ``mrcnn.kernels.portable()`` (RoI crops by gathers, per-class NMS by
  ``NonMaxSuppressionV4``, proposal top-k by threshold), converted by tf2onnx, float64
  pre/post-processing;
- ``tflite``: the same portable graph with float32 pre/post-processing, builtin ops only;
- ``openvino``: the portable graph with float32 pre/post-processing, converted from a SavedModel by
  ``openvino.convert_model`` (compile it with INFERENCE_PRECISION_HINT=f32 for ``detect()``'s numbers).

Each file is checked by one run in its runtime and then renamed into place.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mrcnn.export.saved_model import export_saved_model
from mrcnn.export.serving import MASK_FORMS, ServingModule

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN

FORMATS = ("saved_model", "onnx", "tflite", "openvino")
QUANTIZATIONS = (None, "float16", "dynamic_int8")


def export(
    model: MaskRCNN,
    path: str | os.PathLike,
    format: str = "saved_model",
    masks: str = "full",
    overwrite: bool = False,
    quantize: str | None = None,
    verbose: int = 1,
) -> str:
    """Write ``model`` (inference mode) to ``path`` in ``format``; returns the written file or folder.

    format: "saved_model" (a folder), "onnx" (``.onnx``), "tflite" (``.tflite``) or "openvino" (``.xml``
    with its ``.bin`` beside it); a missing file suffix is appended. masks: "full" (uint8 [B, N, H, W])
    or "boxes" (float32 [B, N, 28, 28] box masks); "both" (two signatures) for SavedModels only.
    quantize (TFLite only): "float16" weights or "dynamic_int8" (dynamic-range int8 weights).
    overwrite: replace what is at ``path`` (else FileExistsError).
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}; got {quantize!r}.")
    if quantize is not None and format != "tflite":
        raise ValueError(f"quantize={quantize!r} applies to format='tflite' only (got format={format!r}).")
    if format == "saved_model":
        return export_saved_model(model, path, masks=masks, overwrite=overwrite, verbose=verbose)
    if format == "onnx":
        from mrcnn.export.to_onnx import export_onnx

        return export_onnx(model, path, masks=masks, overwrite=overwrite, verbose=verbose)
    if format == "tflite":
        from mrcnn.export.to_tflite import export_tflite

        return export_tflite(
            model, path, masks=masks, overwrite=overwrite, quantize=quantize, verbose=verbose
        )
    from mrcnn.export.to_openvino import export_openvino

    return export_openvino(model, path, masks=masks, overwrite=overwrite, verbose=verbose)


__all__ = ["FORMATS", "MASK_FORMS", "QUANTIZATIONS", "ServingModule", "export", "export_saved_model"]
