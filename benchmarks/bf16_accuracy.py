"""Accuracy of bfloat16 inference: one shapes checkpoint evaluated in float32 and in mixed_bfloat16.

Loads the same weights into two inference models (``ShapesInferenceConfig`` with MIXED_PRECISION None and
"mixed_bfloat16"), evaluates both on the shapes demo's held-out images (mrcnn.evaluate.evaluate_map: mask
mAP@0.5 and mAP@[.5:.95]) and prints the two results, their difference and the detect() time per image.

Usage: python benchmarks/bf16_accuracy.py --logs LOGS [--weights PATH] [--images 100] [--json PATH]
       (train a checkpoint first, e.g. python samples/shapes/shapes.py train --logs LOGS --minutes 15)
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def evaluate(logs, weights, images, precision):
    import mrcnn.model as modellib
    from mrcnn.datasets.shapes import ShapesInferenceConfig
    from mrcnn.evaluate import evaluate_map
    from mrcnn.shapes_demo import TEST_SEED, make_dataset

    config = type("Config", (ShapesInferenceConfig,), {"MIXED_PRECISION": precision})()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=logs)
    weights = weights or model.find_last()
    model.load_weights(weights, by_name=True)
    result = evaluate_map(model, make_dataset(images, TEST_SEED), verbose=0)
    return weights, {key: result[key] for key in ("mAP@0.5", "mAP@[.5:.95]", "images", "seconds")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", required=True, help="shapes log directory (its newest checkpoint is used)")
    parser.add_argument("--weights", help="a checkpoint instead of the newest under --logs")
    parser.add_argument("--images", type=int, default=100, help="held-out images (default 100)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    report = {}
    for precision in (None, "mixed_bfloat16"):
        weights, report[precision or "float32"] = evaluate(args.logs, args.weights, args.images, precision)
    report["weights"] = weights
    f32, bf16 = report["float32"], report["mixed_bfloat16"]
    for name in ("float32", "mixed_bfloat16"):
        r = report[name]
        print(
            f"{name:15} mask mAP@0.5 {r['mAP@0.5']:.4f}  mAP@[.5:.95] {r['mAP@[.5:.95]']:.4f}  "
            f"{1000 * r['seconds'] / r['images']:.0f} ms per image (evaluation loop)"
        )
    print(
        f"difference (bf16 - f32): mAP@0.5 {bf16['mAP@0.5'] - f32['mAP@0.5']:+.4f}, "
        f"mAP@[.5:.95] {bf16['mAP@[.5:.95]'] - f32['mAP@[.5:.95]']:+.4f}"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
