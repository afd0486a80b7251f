"""The shapes demo: train Mask R-CNN from scratch on synthetic shapes, evaluate it, draw its detections.

Used by ``samples/shapes/shapes.py`` and ``mrcnn demo``. Training, validation and test images come from
fixed seeds, so evaluation always runs on images the training never saw.
"""

import argparse
import os
import sys
import time

import numpy as np

from mrcnn.datasets.shapes import ShapesFastConfig, ShapesInferenceConfig, make_dataset

TRAIN_SEED, VAL_SEED, TEST_SEED = 0, 1, 2
# Training stops when the validation images reach these (a margin above the 0.90 / 0.70 the demo
# promises on the test images), or when time or epochs run out.
TARGET_MAP50, TARGET_MAP = 0.93, 0.76
VALIDATION_IMAGES = 100


def train(
    logs,
    minutes=None,
    epochs=1000,
    train_images=2000,
    steps_per_epoch=None,
    target=(TARGET_MAP50, TARGET_MAP),
):
    """Train from scratch until the validation mask mAP reaches ``target`` (mAP@0.5, mAP@[.5:.95]),
    checked after every epoch, or for at most ``minutes`` (None: no limit) or ``epochs``.

    ``target=None`` trains for ``minutes`` or ``epochs`` only. Resumes the newest run under ``logs`` when
    there is one. Returns the last checkpoint path.
    """
    import keras

    import mrcnn.model as modellib
    from mrcnn import augment
    from mrcnn.evaluate import StopAtTargetMAP
    from mrcnn.training import StopAfterMinutes

    if target is None and minutes is None and epochs >= 1000:
        raise ValueError("give a target mAP, --minutes or --epochs: otherwise training would not end")
    config = ShapesFastConfig()
    if steps_per_epoch:
        config.STEPS_PER_EPOCH = steps_per_epoch
    keras.utils.set_random_seed(TRAIN_SEED)
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=logs)
    try:
        model.load_weights(model.find_last(), by_name=True)
        print(f"Resuming from {model.find_last()}")
    except FileNotFoundError:
        print("Training from scratch (no checkpoint under the log directory).")
    augmentation = augment.Sequential([augment.Fliplr(0.5), augment.Flipud(0.5)])
    validation = make_dataset(VALIDATION_IMAGES, VAL_SEED)
    callbacks = [StopAfterMinutes(minutes)] if minutes is not None else []
    if target is not None:
        callbacks.append(StopAtTargetMAP(validation, *target))
        print(
            f"Training until mask mAP@0.5 >= {target[0]:.2f} and mAP@[.5:.95] >= {target[1]:.2f} on "
            f"{len(validation.image_ids)} validation images"
            + (f", at most {minutes:g} minutes." if minutes is not None else ".")
        )
    model.train(
        make_dataset(train_images, TRAIN_SEED),
        validation,
        learning_rate=config.LEARNING_RATE,
        epochs=epochs,
        layers="all",
        augmentation=augmentation,
        custom_callbacks=callbacks,
    )
    return model.find_last()


def load_inference_model(logs, weights=None):
    """An inference ``MaskRCNN`` (``ShapesInferenceConfig``) with ``weights`` (default: newest checkpoint)."""
    import mrcnn.model as modellib

    model = modellib.MaskRCNN(mode="inference", config=ShapesInferenceConfig(), model_dir=logs)
    weights = weights or model.find_last()
    print(f"Loading weights {weights}")
    model.load_weights(weights, by_name=True)
    return model


def evaluate(logs, weights=None, images=100):
    """Mask mAP@0.5 and mAP@[.5:.95] on ``images`` held-out images; returns ``evaluate_map``'s dict."""
    from mrcnn.evaluate import evaluate_map

    model = load_inference_model(logs, weights)
    result = evaluate_map(model, make_dataset(images, TEST_SEED))
    print(
        f"Evaluated {result['images']} held-out images in {result['seconds']:.1f} s: "
        f"mask mAP@0.5 = {result['mAP@0.5']:.3f}, mAP@[.5:.95] = {result['mAP@[.5:.95]']:.3f}"
    )
    return result


def write_detections_picture(logs, path, weights=None, count=4):
    """Detect on ``count`` held-out images and save them side by side with masks, boxes and captions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrcnn import visualize

    model = load_inference_model(logs, weights)
    dataset = make_dataset(count, TEST_SEED + 1)
    images = [dataset.load_image(i) for i in dataset.image_ids]
    results = model.detect(images)
    fig, axes = plt.subplots(1, count, figsize=(4 * count, 4.4))
    for ax, image, r in zip(np.atleast_1d(axes), images, results):
        visualize.display_instances(
            image,
            r["rois"],
            r["masks"],
            r["class_ids"],
            dataset.class_names,
            r["scores"],
            ax=ax,
            title=f"{len(r['class_ids'])} detections",
        )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"Wrote {path}")
    return path


def demo(
    logs,
    minutes=None,
    epochs=1000,
    train_images=2000,
    steps_per_epoch=None,
    images=100,
    weights=None,
    out=None,
    target=(TARGET_MAP50, TARGET_MAP),
):
    """Train (``train``), evaluate (``evaluate``) and write the detections PNG.

    ``out`` defaults to LOGS/shapes_detections.png. Returns (evaluation dict, PNG path).
    """
    last = train(logs, minutes, epochs, train_images, steps_per_epoch, target)
    print(f"Last checkpoint: {last}")
    result = evaluate(logs, weights, images)
    path = write_detections_picture(logs, out or os.path.join(logs, "shapes_detections.png"), weights)
    return result, path


def add_train_arguments(parser):
    """The training options shared by ``train`` and ``demo`` (here and in ``mrcnn demo``)."""
    parser.add_argument(
        "--target",
        type=float,
        nargs=2,
        default=[TARGET_MAP50, TARGET_MAP],
        metavar=("MAP50", "MAP"),
        help=f"stop when the validation mask mAP@0.5 and mAP@[.5:.95] reach these "
        f"(default {TARGET_MAP50} {TARGET_MAP})",
    )
    parser.add_argument(
        "--no-target", action="store_true", help="train for --minutes or --epochs only, no target"
    )
    parser.add_argument("--minutes", type=float, default=None, help="time limit (default: none)")
    parser.add_argument("--epochs", type=int, default=1000, help="last epoch (default: 1000)")
    parser.add_argument("--train-images", type=int, default=2000, help="synthetic training images")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: ShapesConfig's 100")


def target_of(args):
    """The (mAP@0.5, mAP@[.5:.95]) target of parsed ``--target`` / ``--no-target``, or None."""
    if args.no_target:
        return None
    for value in args.target:
        if not 0.0 < value <= 1.0:
            raise SystemExit(f"--target values are mAPs in (0, 1]; got {value}")
    return tuple(args.target)


def add_evaluate_arguments(parser):
    """The evaluation options shared by ``evaluate`` and ``demo`` (here and in ``mrcnn demo``)."""
    parser.add_argument("--images", type=int, default=100, help="held-out images (default 100)")
    parser.add_argument("--weights", default=None, help="weights file (default: the newest checkpoint)")


def main(argv=None):
    """Command line: ``train``, ``evaluate`` or ``demo`` (see ``--help``); returns the exit code."""
    parser = argparse.ArgumentParser(
        description="Train Mask R-CNN from scratch on synthetic shapes, evaluate it, and draw detections."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--logs", default="logs", help="log and checkpoint directory (default: logs)")
    for name, text in [
        ("train", "train from scratch (resumes the newest run under --logs)"),
        ("evaluate", "mask mAP on 100 held-out images"),
        ("demo", "train, evaluate and write a PNG of detections"),
    ]:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        if name in ("train", "demo"):
            add_train_arguments(p)
        if name in ("evaluate", "demo"):
            add_evaluate_arguments(p)
        if name == "demo":
            p.add_argument("--out", default=None, help="PNG path (default: LOGS/shapes_detections.png)")
    args = parser.parse_args(argv)
    start = time.time()
    if args.command == "train":
        last = train(
            args.logs, args.minutes, args.epochs, args.train_images, args.steps_per_epoch, target_of(args)
        )
        print(f"Last checkpoint: {last}")
    elif args.command == "evaluate":
        evaluate(args.logs, args.weights, args.images)
    else:
        demo(
            args.logs,
            args.minutes,
            args.epochs,
            args.train_images,
            args.steps_per_epoch,
            args.images,
            args.weights,
            args.out,
            target_of(args),
        )
    print(f"Done in {time.time() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
