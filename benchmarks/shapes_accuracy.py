"""Shapes accuracy at equal wall-clock time: mrcnn against torchvision's Mask R-CNN, same backbone.

Both train from scratch for ``--minutes`` on the same synthetic shapes images (128 px, 1-4 squares,
circles and triangles; ``--train-images`` images from seed 0, no augmentation), with the same settings:
ResNet-{50,101}-FPN with trained BatchNorm, batch 8, 32 sampled RoIs per image of which at most
``int(32 * --roi-positive-ratio)`` positive (default 0.33, Matterport's ROI_POSITIVE_RATIO; torchvision's
``fg_bg_sampler.positive_fraction`` is set to it, its own default being 0.25), SGD learning rate 0.01,
momentum 0.9, every gradient tensor clipped to norm 5.0 (ours: Matterport's GRADIENT_CLIP_NORM), weight
decay 1e-4 in each library's form (ours: Matterport's L2 term, each tensor's sum of squares divided by its
size; torchvision: SGD ``weight_decay``). Then both are scored by the same function,
``mrcnn.evaluate.evaluate_map`` (mask mAP@0.5 and mAP@[.5:.95], Matterport's ``compute_ap``), on
``--test-images`` held-out images (seed 2) with the same detection settings: score >= 0.5, at most 20
detections, masks thresholded at 0.5.

Ours: ``MaskRCNN.train`` with ShapesConfig (``BACKBONE = resnet{depth}``, ``TRAIN_BN = True``), stopped by
``StopAfterMinutes`` (the clock starts when training starts, so the first step's tracing counts; the
epoch-end validation and checkpoints count too). Peer: ``build(depth, 128, 4, 32)`` from
``shared/tools/torchvision_peer.py`` (anchors 8..128 like ours), a plain loop over shuffled batches
whose clock starts at the first step.

The two runs are sequential (ours first), each in its own Python process (``--side``), alone on the
machine: run in one process, torchvision trained about 40% slower after our 15 minutes than alone
(2.1 against 3.0 img/s), which flattered the ratio. Reported: mAP of each, the ratio, training
images/s, images seen, the median step after the first ``STEADY_FROM`` steps, and each process's peak
memory. Needs torch and torchvision (``pip install -e ".[benchmark]"``).
Usage: python benchmarks/shapes_accuracy.py [--minutes 15] [--depth 50] [--roi-positive-ratio 0.33]
       [--json PATH] [--markdown PATH]
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from common import (
    add_isa_argument,
    apply_isa_from_argv,
    core_count,
    isa_line,
    machine_info,
)

apply_isa_from_argv()  # before TensorFlow and torch load: they read the ISA caps once

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torchvision's C extension must load before TensorFlow: the other order segfaults (torch 2.14.1 + TF 2.21).
try:
    import torch
    import torchvision.models.detection  # noqa: F401
except ImportError:
    torch = None
import tensorflow as tf  # noqa: E402
from bench_training import load_peer_build, peer_batch  # noqa: E402  (after torch, like this module)

REPO = Path(__file__).resolve().parents[1]
SIZE, BATCH, ROIS, NUM_CLASSES = 128, 8, 32, 4
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, CLIP_NORM = 0.01, 0.9, 1e-4, 5.0
SCORE_THRESHOLD, MAX_DETECTIONS = 0.5, 20
TRAIN_SEED, VAL_SEED, TEST_SEED = 0, 1, 2
STEADY_FROM = 20  # steps left out of the steady-state median step time


def shapes_dataset(count, seed):
    from mrcnn.datasets.shapes import make_dataset

    return make_dataset(count, seed, SIZE)


def our_configs(depth, roi_positive_ratio):
    """(training, inference) configs: ShapesConfig with ResNet-{depth}, trained BN, the shared settings."""
    from mrcnn.datasets.shapes import ShapesConfig

    attrs = {
        "NAME": f"shapes_r{depth}",
        "BACKBONE": f"resnet{depth}",
        "TRAIN_BN": True,
        "IMAGES_PER_GPU": BATCH,
        "TRAIN_ROIS_PER_IMAGE": ROIS,
        "ROI_POSITIVE_RATIO": roi_positive_ratio,
        "LEARNING_RATE": LEARNING_RATE,
        "LEARNING_MOMENTUM": MOMENTUM,
        "WEIGHT_DECAY": WEIGHT_DECAY,
        "GRADIENT_CLIP_NORM": CLIP_NORM,
        "DETECTION_MIN_CONFIDENCE": SCORE_THRESHOLD,
        "DETECTION_MAX_INSTANCES": MAX_DETECTIONS,
    }
    train_config = type("AccuracyShapesConfig", (ShapesConfig,), attrs)
    return train_config(), train_config()


def train_ours(args, train_set, val_set, logs):
    """Train mrcnn for ``args.minutes``; returns (inference model, summary dict)."""
    import keras

    import mrcnn.model as modellib
    from mrcnn.training import StopAfterMinutes

    config, inference_config = our_configs(args.depth, args.roi_positive_ratio)
    keras.utils.set_random_seed(TRAIN_SEED)
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=logs)
    losses, step_ends = [], []

    class RecordSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step_ends.append(time.monotonic())
            losses.append(float(logs["loss"]) if logs and "loss" in logs else float("nan"))

    start = time.monotonic()
    model.train(
        train_set,
        val_set,
        learning_rate=LEARNING_RATE,
        epochs=10_000,
        layers="all",
        custom_callbacks=[StopAfterMinutes(args.minutes), RecordSteps()],
        verbose=0,
    )
    seconds = time.monotonic() - start
    weights = model.find_last()
    inference = modellib.MaskRCNN(mode="inference", config=inference_config, model_dir=logs)
    inference.load_weights(weights, by_name=True)
    # Step durations between consecutive batch ends; an epoch's end (validation, checkpoint) falls into
    # the next epoch's first step, so the median leaves it out.
    return inference, summary(
        losses, np.diff([start] + step_ends), seconds, weights=os.path.basename(weights)
    )


def summary(losses, step_seconds, seconds, **extra):
    """One side's training figures: steps, images/s over the whole run, the steady-state median step.

    The median leaves out the first ``STEADY_FROM`` steps (the first half in runs shorter than twice that).
    """
    steady = step_seconds[min(STEADY_FROM, len(step_seconds) // 2) :]
    return {
        "steps": len(losses),
        "images_seen": len(losses) * BATCH,
        "train_seconds": seconds,
        "images_per_s": len(losses) * BATCH / seconds,
        "steady_step_median_s": float(np.median(steady)) if len(steady) else None,
        "step_s": [round(float(t), 4) for t in step_seconds],
        "last_loss": losses[-1] if losses else None,
        **extra,
    }


def train_peer(args, train_set):
    """Train torchvision's Mask R-CNN for ``args.minutes``; returns (model in eval mode, summary dict)."""
    from mrcnn.utils import extract_bboxes

    torch.manual_seed(TRAIN_SEED)
    model = load_peer_build()(args.depth, SIZE, NUM_CLASSES, ROIS).train()
    model.roi_heads.fg_bg_sampler.positive_fraction = args.roi_positive_ratio
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    rng = np.random.default_rng(TRAIN_SEED)
    order, position, losses, step_seconds = rng.permutation(train_set.image_ids), 0, [], []
    start = time.monotonic()
    while time.monotonic() - start < args.minutes * 60.0:
        step_start = time.monotonic()
        if position + BATCH > len(order):
            order, position = rng.permutation(train_set.image_ids), 0
        images, targets = peer_batch(train_set, order[position : position + BATCH], extract_bboxes)
        position += BATCH
        loss = sum(model(images, targets).values())
        if not torch.isfinite(loss):
            raise RuntimeError(f"torchvision loss became {float(loss)} after {len(losses)} steps")
        optimizer.zero_grad()
        loss.backward()
        for parameter in model.parameters():  # per-tensor clipping, like ours (clipnorm)
            if parameter.grad is not None:
                torch.nn.utils.clip_grad_norm_([parameter], CLIP_NORM)
        optimizer.step()
        losses.append(float(loss.detach()))
        step_seconds.append(time.monotonic() - step_start)
    seconds = time.monotonic() - start
    model.roi_heads.score_thresh = SCORE_THRESHOLD
    model.roi_heads.detections_per_img = MAX_DETECTIONS
    return model.eval(), summary(losses, step_seconds, seconds)


class PeerDetector:
    """torchvision's model behind mrcnn's ``detect()`` interface, so ``evaluate_map`` scores both alike."""

    def __init__(self, model):
        self.model = model
        self.config = types.SimpleNamespace(BATCH_SIZE=BATCH)

    def detect(self, images):
        """uint8 [H, W, 3] images -> dicts of rois (y1, x1, y2, x2) px, class_ids, scores, masks [H, W, N]."""
        with torch.inference_mode():
            outputs = self.model(
                [torch.from_numpy(image).permute(2, 0, 1).float().div(255.0) for image in images]
            )
        results = []
        for output in outputs:
            boxes = output["boxes"].numpy()[:, [1, 0, 3, 2]]
            masks = (output["masks"][:, 0] >= 0.5).numpy().transpose(1, 2, 0)
            results.append(
                {
                    "rois": np.round(boxes).astype(np.int32),
                    "class_ids": output["labels"].numpy().astype(np.int32),
                    "scores": output["scores"].numpy().astype(np.float32),
                    "masks": masks,
                }
            )
        return results


def markdown(report):
    s, ours, peer = report["settings"], report["ours"], report["torchvision"]
    lines = [
        f"# Shapes accuracy at equal training time, CPU ({report['date']})",
        "",
        f"**R{s['depth']}-FPN both, {s['minutes']:g} minutes of training each from scratch, "
        f"{s['test_images']} held-out images**",
        "",
        "| | mask mAP@0.5 | mask mAP@[.5:.95] | training img/s (whole run) | images seen "
        f"| median step after {s.get('steady_from', STEADY_FROM)} (s) | peak memory (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, side in (("mrcnn", ours), ("torchvision", peer)):
        lines.append(
            f"| {name} | {side['mAP@0.5']:.3f} | {side['mAP@[.5:.95]']:.3f} | "
            f"{side['images_per_s']:.2f} | {side['images_seen']} | "
            f"{side['steady_step_median_s']:.3f} | {side['peak_rss_mb']:.0f} |"
        )
    m = report["machine"]
    lines += [
        "",
        f"- Ratios ours / torchvision: mAP@0.5 {report['ratios']['mAP@0.5']}, mAP@[.5:.95] "
        f"{report['ratios']['mAP@[.5:.95]']}, training img/s {report['ratios']['images_per_s']:.2f} "
        f"(whole run), {report['ratios']['steady_step_images_per_s']:.2f} (median steps).",
        "- Each side trained and was scored in its own Python process, one after the other.",
        f"- Settings: {s['train_images']} training images, batch {BATCH}, {ROIS} RoIs/image (at most "
        f"int({ROIS} * {s.get('roi_positive_ratio', 0.33)}) positive, both), SGD "
        f"{LEARNING_RATE} momentum {MOMENTUM} weight decay {WEIGHT_DECAY} (each library's form), "
        f"per-tensor clip {CLIP_NORM}, trained BatchNorm; detections: score >= {SCORE_THRESHOLD}, "
        f"at most {MAX_DETECTIONS}.",
        f"- Machine: {m['cpu']}, {m['cores_available']} cores; tensorflow {m['tensorflow']}, keras "
        f"{m['keras']}, torch {m['torch']}, torchvision {m['torchvision']}, mrcnn commit "
        f"{m['mrcnn_commit']}.",
        isa_line(m),
    ]
    if report.get("note"):
        lines.append(f"- Note: {report['note']}")
    return "\n".join(lines) + "\n"


def ratio(a, b):
    return round(a / b, 2) if b > 0 else None


def run_side(args):
    """Train and score one side (``args.side``) in this process; returns its summary dict."""
    cores = core_count()
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    torch.set_num_threads(cores)
    sys.path.insert(0, str(REPO))
    from mrcnn.evaluate import evaluate_map

    train_set = shapes_dataset(args.train_images, TRAIN_SEED)
    test_set = shapes_dataset(args.test_images, TEST_SEED)
    print(f"{args.side}: training R{args.depth}-FPN for {args.minutes:g} minutes ...", flush=True)
    if args.side == "ours":
        with tempfile.TemporaryDirectory() as logs:
            model, result = train_ours(args, train_set, shapes_dataset(16, VAL_SEED), logs)
            result.update(evaluate_map(model, test_set, verbose=0))
    else:
        peer, result = train_peer(args, train_set)
        result.update(evaluate_map(PeerDetector(peer), test_set, verbose=0))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.side}: {result['steps']} steps, mAP@0.5 {result['mAP@0.5']:.3f}", flush=True)
    return result


def run_in_subprocess(side, argv):
    """``run_side`` for ``side`` in a fresh Python process (nothing left over from the other side)."""
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / f"{side}.json"
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                *argv,
                "--side",
                side,
                "--side-result",
                str(result_path),
            ],
            check=True,
        )
        return json.loads(result_path.read_text())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(p)
    p.add_argument("--minutes", type=float, default=15.0, help="training time of each side (default 15)")
    p.add_argument("--depth", type=int, default=50, choices=[50, 101], help="ResNet depth of both")
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=100)
    p.add_argument(
        "--roi-positive-ratio",
        type=float,
        default=0.33,
        help="both sides' cap on positive RoIs per image, as a fraction of the 32 (default 0.33)",
    )
    p.add_argument("--json", help="write the report here")
    p.add_argument("--markdown", help="write the table here")
    p.add_argument("--note", default="", help="free text stored in the report")
    p.add_argument("--side", choices=["ours", "torchvision"], help=argparse.SUPPRESS)
    p.add_argument("--side-result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if torch is None:
        p.error('torch and torchvision are needed: pip install -e ".[benchmark]"')
    if args.minutes <= 0 or min(args.train_images, args.test_images) < BATCH:
        p.error(f"--minutes must be > 0 and the image counts at least {BATCH}.")
    if not 0 < args.roi_positive_ratio <= 1:
        p.error(f"--roi-positive-ratio must be in (0, 1] (got {args.roi_positive_ratio}).")
    if args.side:
        Path(args.side_result).write_text(json.dumps(run_side(args), default=float) + "\n")
        return None

    sys.path.insert(0, str(REPO))
    import mrcnn  # noqa: F401  (version for the report)

    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "note": args.note,
        "settings": {
            "depth": args.depth,
            "minutes": args.minutes,
            "train_images": args.train_images,
            "test_images": args.test_images,
            "size": SIZE,
            "batch": BATCH,
            "rois": ROIS,
            "roi_positive_ratio": args.roi_positive_ratio,
            "steady_from": STEADY_FROM,
            "processes": "one per side",
        },
        "machine": machine_info(core_count()),
    }
    report["ours"] = run_in_subprocess("ours", argv)
    report["torchvision"] = run_in_subprocess("torchvision", argv)
    report["ratios"] = {
        key: ratio(report["ours"][key], report["torchvision"][key])
        for key in ("mAP@0.5", "mAP@[.5:.95]", "images_per_s")
    }
    report["ratios"]["steady_step_images_per_s"] = ratio(
        report["torchvision"]["steady_step_median_s"], report["ours"]["steady_step_median_s"]
    )
    report["loadavg_end"] = list(os.getloadavg())
    text = markdown(report)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return report


if __name__ == "__main__":
    main()
