"""OpenVINO IR export: the portable serving graph converted by ``openvino.convert_model``."""

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


FLOAT32 = {"INFERENCE_PRECISION_HINT": "f32"}
"""``compile_model`` config for detect()'s numbers: OpenVINO's CPU plugin computes in bfloat16 by default on
CPUs that have it (AVX-512 BF16, AMX), which moved the test model's scores by up to 0.02 and dropped a
detection at the confidence threshold. The model file cannot carry this setting (the CPU plugin reads
only a few runtime options from the IR)."""


def export_openvino(
    model: MaskRCNN,
    path: str | os.PathLike,
    masks: str = "full",
    overwrite: bool = False,
    verbose: int = 1,
) -> str:
    """Write ``model`` (inference mode) as OpenVINO IR: ``path`` (``.xml``) and its weights beside it
    (``.bin``); returns the absolute ``.xml`` path.

    The serving graph is traced inside ``mrcnn.kernels.portable()`` with float32 pre/post-processing,
    saved as a temporary SavedModel, converted by OpenVINO's TensorFlow frontend
    (``openvino.convert_model``) and saved by ``openvino.save_model`` with float32 weights. One run on
    OpenVINO's CPU plugin checks it; the ``.bin`` is renamed into place first, then the ``.xml``.
    (The ONNX file is not the source: OpenVINO's ONNX frontend rejects the Loop tf2onnx writes for the
    per-image proposal NMS.)
    """
    check_exportable(model, masks, ("full", "boxes"))
    openvino = require("openvino", "The OpenVINO export")
    path = staging.destination(path, overwrite, ".xml")
    weights_path = path[: -len(".xml")] + ".bin"
    staging.destination(weights_path, overwrite)
    with kernels.portable(), tempfile.TemporaryDirectory(prefix="mrcnn-openvino-") as workdir:
        module = ServingModule(model, dtype=tf.float32)
        signatures = saved_model.serving_signatures(module, masks)
        saved_model.save(module, signatures, os.path.join(workdir, "saved_model"))
        converted = openvino.convert_model(os.path.join(workdir, "saved_model"))
        staged_xml = os.path.join(workdir, "model.xml")
        openvino.save_model(converted, staged_xml, compress_to_fp16=False)
        compiled = openvino.Core().compile_model(staged_xml, "CPU", FLOAT32)
        result = compiled({"images": probe.probe_image(model.config)})
        outputs = {port.get_any_name(): value for port, value in result.items()}
        probe.check_outputs(outputs, model.config, masks, "OpenVINO")
        names = sorted(outputs)
        with staging.staged(weights_path) as staged_bin:
            os.replace(os.path.join(workdir, "model.bin"), staged_bin)
        with staging.staged(path) as staged_file:  # read_model pairs x.xml with the x.bin beside it
            os.replace(staged_xml, staged_file)
    if verbose:
        print(
            f"Saved the OpenVINO model to {path} (weights {weights_path}): input 'images' uint8 [batch, "
            f"height, width, {int(model.config.IMAGE_CHANNEL_COUNT)}]; outputs {', '.join(names)}; "
            f"masks={masks!r}. Compile it with {FLOAT32} for detect()'s numbers."
        )
    return path
