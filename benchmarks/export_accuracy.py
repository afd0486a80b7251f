"""Accuracy of each export against detect(): held-out mask mAP and detection-for-detection agreement.

Uses the trained test model (``tests/export_weights.py``: small shapes network, 128 px, weights in
``tests/data/export_shapes.h5``) on ``--images`` held-out shapes images. For detect() and every export
(SavedModel, ONNX, TFLite float32 / float16 weights / dynamic-range int8, OpenVINO f32 and bf16) it
reports mask mAP@0.5 and mAP@[.5:.95] against the ground truth and, against detect(): images with the
same number of detections and class ids, the largest box difference (px), the largest score
difference, and the share of equal mask pixels (the last three over the images with detect()'s class
ids).
Usage: python benchmarks/export_accuracy.py [--images 50] [--json PATH] [--markdown PATH]
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import core_count, machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from export_weights import WEIGHTS, ExportShapesConfig  # noqa: E402

import mrcnn.model as modellib  # noqa: E402
from mrcnn import utils  # noqa: E402
from mrcnn.datasets.shapes import make_dataset  # noqa: E402
from mrcnn.export import export  # noqa: E402

VARIANTS = {  # name: (format, export options, runtime options)
    "SavedModel": ("saved_model", {}, {}),
    "ONNX (onnxruntime)": ("onnx", {}, {}),
    "TFLite float32": ("tflite", {}, {}),
    "TFLite float16 weights": ("tflite", {"quantize": "float16"}, {}),
    "TFLite dynamic-range int8": ("tflite", {"quantize": "dynamic_int8"}, {}),
    "OpenVINO f32": ("openvino", {}, {"INFERENCE_PRECISION_HINT": "f32"}),
    "OpenVINO bf16": ("openvino", {}, {"INFERENCE_PRECISION_HINT": "bf16"}),
}
SUFFIX = {"saved_model": "", "onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


def runner(fmt, path, options):
    """function(uint8 [1, H, W, 3]) -> detect()-style result dict for one image."""
    if fmt == "saved_model":
        import tensorflow as tf

        signature = tf.saved_model.load(path).signatures["serving_default"]

        def raw(images):
            return {k: v.numpy() for k, v in signature(images=tf.constant(images)).items()}
    elif fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]

        def raw(images):
            return dict(zip(names, session.run(None, {"images": images})))
    elif fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        signature_runner = Interpreter(model_path=path).get_signature_runner()

        def raw(images):
            return signature_runner(images=images)
    else:
        import openvino

        compiled = openvino.Core().compile_model(path, "CPU", options)

        def raw(images):
            return {port.get_any_name(): value for port, value in compiled({"images": images}).items()}

    def run(image):
        out = raw(image[None])
        n = int(out["num_detections"][0])
        return {
            "rois": out["boxes"][0, :n].astype(np.int32),
            "class_ids": out["class_ids"][0, :n],
            "scores": out["scores"][0, :n],
            "masks": out["masks"][0, :n].astype(bool).transpose(1, 2, 0),
        }

    return run


def agreement(result, reference):
    """(same detections?, max box px, max score diff, equal mask pixel share) against ``reference``;
    the differences are measured on images with the same class ids only (else 0, 0, 1)."""
    same = len(result["class_ids"]) == len(reference["class_ids"]) and np.array_equal(
        result["class_ids"], reference["class_ids"]
    )
    if not same or len(result["class_ids"]) == 0:
        return same, 0.0, 0.0, 1.0
    box = float(np.abs(result["rois"] - reference["rois"]).max())
    score = float(np.abs(result["scores"] - reference["scores"]).max())
    return same, box, score, float((result["masks"] == reference["masks"]).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    model = modellib.MaskRCNN("inference", ExportShapesConfig(), tempfile.mkdtemp())
    model.load_weights(str(WEIGHTS), by_name=True)
    dataset = make_dataset(args.images, seed=12345)
    images = [dataset.load_image(i) for i in dataset.image_ids]
    truths = []
    for i in dataset.image_ids:
        masks, class_ids = dataset.load_mask(i)
        truths.append((utils.extract_bboxes(masks), class_ids, masks))
    results = {"detect()": [model.detect([image])[0] for image in images]}
    workdir = tempfile.mkdtemp(prefix="export-accuracy-")
    paths = {}
    for name, (fmt, export_options, runtime_options) in VARIANTS.items():
        key = (fmt, tuple(sorted(export_options.items())))
        if key not in paths:
            target = os.path.join(workdir, f"m{len(paths)}{SUFFIX[fmt]}")
            paths[key] = export(model, target, format=fmt, verbose=0, **export_options)
        run = runner(fmt, paths[key], runtime_options)
        results[name] = [run(image) for image in images]
        print(f"ran {name}", flush=True)
    rows = {}
    for name, per_image in results.items():
        ap50 = [
            utils.compute_ap(*truth, r["rois"], r["class_ids"], r["scores"], r["masks"])[0]
            for truth, r in zip(truths, per_image)
        ]
        ap_range = [
            utils.compute_ap_range(*truth, r["rois"], r["class_ids"], r["scores"], r["masks"], verbose=0)
            for truth, r in zip(truths, per_image)
        ]
        agree = [agreement(r, ref) for r, ref in zip(per_image, results["detect()"])]
        rows[name] = {
            "mAP@0.5": float(np.mean(ap50)),
            "mAP@[.5:.95]": float(np.mean(ap_range)),
            "images_same_detections": int(sum(a[0] for a in agree)),
            "images_boxes_within_1px": int(sum(a[0] and a[1] <= 1 for a in agree)),
            "max_box_px": max(a[1] for a in agree),
            "max_score_diff": max(a[2] for a in agree),
            "min_mask_agreement": min(a[3] for a in agree),
            "detections": int(sum(len(r["class_ids"]) for r in per_image)),
        }
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(core_count()),
        "images": args.images,
        "rows": rows,
    }
    lines = [
        f"# Export accuracy on {args.images} held-out shapes images "
        f"({report['date']}, {report['machine']['cpu']})",
        "",
        "| runtime | mask mAP@0.5 | mAP@[.5:.95] | detections | images with detect()'s class ids | "
        "... and boxes within 1 px | max box px | max score diff | min mask agreement |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['mAP@0.5']:.3f} | {row['mAP@[.5:.95]']:.3f} | {row['detections']} | "
            f"{row['images_same_detections']}/{args.images} | "
            f"{row['images_boxes_within_1px']}/{args.images} | "
            f"{row['max_box_px']:.0f} | "
            f"{row['max_score_diff']:.4f} | {row['min_mask_agreement']:.4f} |"
        )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
