"""SavedModel export: the serving graph for TF Serving or ``tf.saved_model.load`` without mrcnn."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import tensorflow as tf

from mrcnn import kernels
from mrcnn.export import staging
from mrcnn.export.serving import ServingModule, check_exportable

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN


def serving_signatures(module: ServingModule, masks: str) -> dict:
    """The concrete functions to save: ``serving_default`` (full or box masks) and, for ``masks="both"``,
    ``serving_boxes_masks``. Trace inside a kernels context (``disabled()`` or ``portable()``)."""
    if masks == "boxes":
        signatures = {"serving_default": module.detect_boxes.get_concrete_function()}
    else:
        signatures = {"serving_default": module.detect_full.get_concrete_function()}
        if masks == "both":
            signatures["serving_boxes_masks"] = module.detect_boxes.get_concrete_function()
    module.track_variables(signatures.values())
    return signatures


def save(module: ServingModule, signatures: dict, path: str) -> None:
    """Write ``module`` with ``signatures`` as a SavedModel at ``path`` (a new or empty folder)."""
    tf.saved_model.save(module, path, signatures=signatures)


def export_saved_model(
    model: MaskRCNN,
    export_dir: str | os.PathLike,
    masks: str = "full",
    overwrite: bool = False,
    verbose: int = 1,
) -> str:
    """Write ``model`` (an inference-mode ``MaskRCNN``) as a SavedModel for TF Serving.

    export_dir: the SavedModel directory (for TF Serving, a numbered version folder such as
    ``models/mask_rcnn/1``). It is written to a temporary folder beside it and renamed into place.
    masks: "full" (``serving_default`` returns uint8 [B, N, H, W] masks), "boxes" (float32
    [B, N, MASK_H, MASK_W] box masks) or "both" (full in ``serving_default``, box masks in
    ``serving_boxes_masks``). overwrite: replace an existing ``export_dir`` (else FileExistsError).
    Returns the absolute path of ``export_dir``. The signature: ``mrcnn.export.serving``.

    The graph uses TensorFlow's own kernels (``mrcnn.kernels.disabled()``): mrcnn's Winograd convolutions
    and blocked NMS are XLA-compiled functions, which a TF Serving build need not support.
    """
    check_exportable(model, masks)
    export_dir = staging.destination(export_dir, overwrite)
    with kernels.disabled():
        module = ServingModule(model)
        signatures = serving_signatures(module, masks)
        with staging.staged(export_dir, directory=True) as staged_dir:
            save(module, signatures, staged_dir)
    if verbose:
        print(
            f"Saved the serving model to {export_dir}: signatures {', '.join(signatures)}; input 'images' "
            f"uint8 [batch, height, width, {int(model.config.IMAGE_CHANNEL_COUNT)}]; masks={masks!r}."
        )
    return export_dir
