"""The ``mrcnn`` subcommands: resolving and checking weights, then demo, train, detect, evaluate, export
and inspect-weights. Heavy modules (TensorFlow, Keras) are imported inside the commands that need them."""

import argparse
import collections
import json
import os
import time

import numpy as np

from mrcnn import weights
from mrcnn.cli.configs import UserError, config_to_json, load_config, parse_class_names

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

COCO_WEIGHTS_PATH = os.path.join(os.path.expanduser("~"), ".keras", "models", "mask_rcnn_coco.h5")
"""Where ``--weights coco`` is downloaded when ./mask_rcnn_coco.h5 does not exist."""


############################################################
#  Weights files
############################################################


def describe_weights(path: str) -> dict:
    """``mrcnn.weights.describe_weights`` with the samples as candidates ("sample": the ``--config`` name
    the file fits); a missing or unreadable file is a UserError."""
    import h5py

    from mrcnn.sample_configs import SAMPLES

    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 weights file (wrong format or an incomplete download).")
    candidates = {name: sample.config() for name, sample in SAMPLES.items()}
    try:
        return weights.describe_weights(path, candidates)
    except ValueError as err:
        raise UserError(str(err)) from err


def _config_hint(likely):
    """A sentence telling which --config fits weights with ``likely`` values."""
    parts = [f"{k}={v}" for k, v in likely.items() if k != "sample"]
    hint = f"The weights look like a config with {', '.join(parts)}"
    if "sample" in likely:
        return hint + f": pass --config {likely['sample']} (or the config JSON they were trained with)."
    return hint + ": pass --config with the JSON config they were trained with (e.g. LOG_DIR/config.json)."


def check_weights_fit(config, description: dict, path: str) -> None:
    """Raise UserError naming the config to pass when the weights file cannot fill ``config``'s model."""
    wrong = weights.config_mismatches(config, description["likely"])
    if wrong:
        raise UserError(
            f"weights {path} do not fit the config {config.NAME!r}: "
            + "; ".join(f"{key}={found} (config: {expected})" for key, found, expected in wrong)
            + ". "
            + _config_hint(description["likely"])
        )


def resolve_weights(spec: str, model=None) -> str:
    """Path of ``--weights``: a file, "coco" (downloaded once), "last" (newest checkpoint of ``model``'s
    NAME under its model_dir) or "imagenet" (Keras' ResNet-50 file)."""
    if spec == "coco":
        if os.path.isfile("mask_rcnn_coco.h5"):
            return os.path.abspath("mask_rcnn_coco.h5")
        if not os.path.isfile(COCO_WEIGHTS_PATH):
            from mrcnn.download import download_trained_weights

            os.makedirs(os.path.dirname(COCO_WEIGHTS_PATH), exist_ok=True)
            try:
                download_trained_weights(COCO_WEIGHTS_PATH)
            except OSError as err:
                raise UserError(
                    f"could not download the COCO weights ({err}); download mask_rcnn_coco.h5 "
                    "yourself and pass its path to --weights."
                ) from err
        return COCO_WEIGHTS_PATH
    if spec == "last":
        try:
            return model.find_last()
        except FileNotFoundError as err:
            raise UserError(f"--weights last: {err}; train first or pass a weights file.") from err
    if spec == "imagenet":
        try:
            return model.get_imagenet_weights()
        except Exception as err:  # Keras raises plain Exception for failed downloads
            raise UserError(f"could not get the ImageNet weights ({err}).") from err
    if not os.path.isfile(spec):
        raise UserError(f"weights file not found: {spec} (give a .h5 path, or coco, last or imagenet).")
    return spec


def build_inference_model(args: argparse.Namespace, **overrides) -> tuple:
    """(MaskRCNN in inference mode with all its weights loaded, class names) from --config/--weights.

    ``--weights last`` is the newest checkpoint of the config's NAME under ``--logs``.
    """
    from mrcnn import model as modellib

    config, class_names = load_config(args.config, inference=True, **overrides)
    path = resolve_weights(args.weights) if args.weights not in ("last", "imagenet") else None
    if args.weights == "imagenet":
        raise UserError(
            "--weights imagenet holds only a backbone; this command needs trained Mask R-CNN weights."
        )
    if path:
        check_weights_fit(config, describe_weights(path), path)
    backbone = weights.backbone_label(config)
    print(f"Building the {config.NAME} model ({backbone}, NUM_CLASSES={config.NUM_CLASSES})")
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    path = path or resolve_weights("last", model)
    print(f"Loading weights {path}")
    try:
        report = model.load_weights(path, by_name=True)
    except ValueError as err:
        raise UserError(f"{err} {_config_hint(describe_weights(path)['likely'])}") from err
    if report["missing"]:
        raise UserError(
            f"weights {path} lack {len(report['missing'])} layers of the model "
            f"({', '.join(report['missing'][:4])}, ...). " + _config_hint(describe_weights(path)["likely"])
        )
    return model, class_names


############################################################
#  Commands
############################################################


def collect_images(paths: list[str]) -> list[str]:
    """Image files named by ``paths``: files as given, folders' image files (sorted, not recursive)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise UserError(f"folder {path} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"image or folder not found: {path}")
    return files


def read_image(path: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] (grayscale and alpha images converted). Raises UserError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read image {path}: {err}") from err


def _output_names(files):
    """A distinct PNG name per input file: its stem, with a counter when stems repeat."""
    names, seen = [], {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}.png")
    return names


def save_overlay(image, r: dict, class_names: list[str], path: str) -> None:
    """Save ``image`` with ``detect()`` result ``r`` drawn (masks, dashed boxes, "name score" captions).

    The PNG shows the image at least 640 px on its long side (small images are enlarged so captions
    stay readable), with a 10-pixel margin.
    """
    import matplotlib

    matplotlib.use("Agg")
    from mrcnn import visualize

    height, width = image.shape[:2]
    scale = max(1.0, 640.0 / max(height, width))
    figsize = ((width + 20) * scale / 100.0, (height + 20) * scale / 100.0)
    colors = visualize.random_colors(len(r["class_ids"]), seed=0)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, figsize=figsize)
    visualize.display_instances(
        image, r["rois"], r["masks"], r["class_ids"], class_names, r["scores"], ax=ax, colors=colors
    )
    fig.subplots_adjust(left=0, right=1, top=1, bottom=0)
    fig.savefig(path, format="png")
    plt.close(fig)


def cmd_detect(args: argparse.Namespace) -> int:
    from mrcnn.evaluate import detections_to_coco

    files = collect_images(args.images)
    overrides = {}
    if args.min_confidence is not None:
        overrides["DETECTION_MIN_CONFIDENCE"] = args.min_confidence
    os.makedirs(args.out, exist_ok=True)
    model, class_names = build_inference_model(args, **overrides)
    num_classes = model.config.NUM_CLASSES
    if args.class_names:
        class_names = parse_class_names(args.class_names, num_classes)
    if class_names is None or len(class_names) != num_classes:
        class_names = ["BG"] + [f"class {i}" for i in range(1, num_classes)]
    images_info, results = [], []
    start = time.perf_counter()
    for index, (path, name) in enumerate(zip(files, _output_names(files)), start=1):
        image = read_image(path)
        r = model.detect([image])[0]
        png = os.path.join(args.out, name)
        save_overlay(image, r, class_names, png)
        images_info.append(
            {
                "id": index,
                "file_name": os.path.abspath(path),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
            }
        )
        results.extend(detections_to_coco(index, r["rois"], r["class_ids"], r["scores"], r["masks"]))
        counts = collections.Counter(class_names[c] for c in r["class_ids"])
        found = ", ".join(f"{count} {name}" for name, count in counts.most_common()) or "nothing"
        print(
            f"[{index}/{len(files)}] {path}: {len(r['class_ids'])} instances ({found}) -> {png}", flush=True
        )
    categories = [{"id": i, "name": class_names[i]} for i in range(1, num_classes)]
    results_path = os.path.join(args.out, "results.json")
    images_path = os.path.join(args.out, "images.json")
    with open(results_path, "w") as f:
        json.dump(results, f)
    with open(images_path, "w") as f:
        json.dump({"images": images_info, "categories": categories, "annotations": []}, f)
    print(f"Detected {len(results)} instances in {len(files)} images in {time.perf_counter() - start:.1f} s.")
    print(
        f"COCO results: {results_path} (image ids and categories in {images_path}: "
        "COCO(images.json).loadRes(results.json) loads them)."
    )
    return EXIT_OK


def _open_dataset(path, what):
    from mrcnn.datasets import open_dataset

    try:
        dataset = open_dataset(path)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise UserError(f"{what} {path}: {err}") from err
    if dataset.num_images == 0:
        raise UserError(f"{what} {path} has no images.")
    return dataset


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mrcnn.evaluate import evaluate_coco

    dataset = _open_dataset(args.dataset, "--dataset")
    print(f"Dataset {args.dataset}: {dataset.num_images} images, classes {dataset.class_names[1:]}")
    overrides = {"DETECTION_MIN_CONFIDENCE": args.min_confidence}
    model, _ = build_inference_model(args, **overrides)
    if dataset.num_classes != model.config.NUM_CLASSES:
        raise UserError(
            f"the dataset has {dataset.num_classes} classes (with BG) but the model "
            f"NUM_CLASSES={model.config.NUM_CLASSES}; evaluate with the weights and config "
            "trained on this dataset's classes."
        )
    result = evaluate_coco(model, dataset, limit=args.limit or None, verbose=1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in result.items() if k != "results"}, f, indent=2)
        print(f"Wrote {args.json}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from mrcnn.export import export

    model, _ = build_inference_model(args)
    try:
        path = export(
            model,
            args.out,
            format=args.format,
            masks=args.masks,
            overwrite=args.overwrite,
            quantize=args.quantize,
        )
    except (FileExistsError, ValueError, ImportError) as err:
        raise UserError(str(err)) from err
    print(f"Exported {args.format} model to {path}")
    return EXIT_OK


def cmd_inspect_weights(args: argparse.Namespace) -> int:
    description = describe_weights(args.file)
    if args.layers:
        for layer, entries in description["layers"]:
            for name, shape, dtype in entries:
                print(f"{layer:28} {name:44} {str(list(shape)):22} {dtype}")
    print(
        f"{args.file}: {len(description['layers'])} layers with weights, {description['tensors']} tensors, "
        f"{description['parameters']:,} parameters"
    )
    likely = description["likely"]
    for key, value in likely.items():
        if key != "sample":
            print(f"  {key:28} {value}")
    if "sample" in likely:
        print(f"  matches --config {likely['sample']}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from mrcnn import shapes_demo

    out = os.path.join(args.out or args.logs, "shapes_detections.png")
    shapes_demo.demo(
        args.logs,
        args.minutes,
        args.epochs,
        args.train_images,
        args.steps_per_epoch,
        args.images,
        args.weights,
        out,
        shapes_demo.target_of(args),
    )
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from mrcnn import model as modellib
    from mrcnn.training import StopAfterMinutes

    train_set = _open_dataset(args.dataset, "--dataset")
    val_set = _open_dataset(args.val_dataset, "--val-dataset") if args.val_dataset else train_set
    if val_set.class_names != train_set.class_names:
        raise UserError(
            f"--val-dataset classes {val_set.class_names[1:]} differ from --dataset classes "
            f"{train_set.class_names[1:]}."
        )
    print(
        f"Training on {train_set.num_images} images, validating on {val_set.num_images}"
        + ("" if args.val_dataset else " (the training images: pass --val-dataset for a held-out set)")
        + f"; classes {train_set.class_names[1:]}"
    )
    overrides = {"NUM_CLASSES": train_set.num_classes}
    if args.steps_per_epoch:
        overrides["STEPS_PER_EPOCH"] = args.steps_per_epoch
    config, _ = load_config(args.config, **overrides)
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=args.logs)
    if args.weights:
        path = resolve_weights(args.weights, model)
        likely = describe_weights(path)["likely"]
        other_classes = likely.get("NUM_CLASSES", config.NUM_CLASSES) != config.NUM_CLASSES
        exclude = weights.CLASS_SPECIFIC_LAYERS if other_classes else None
        print(
            f"Loading weights {path}"
            + (
                f" (except {', '.join(weights.CLASS_SPECIFIC_LAYERS)}: other classes)"
                if other_classes
                else ""
            )
        )
        try:
            report = model.load_weights(path, by_name=True, exclude=exclude)
        except ValueError as err:
            raise UserError(f"{err} {_config_hint(likely)}") from err
        if not report["loaded"]:
            raise UserError(f"no layer of {path} matches the model. {_config_hint(likely)}")
    os.makedirs(model.log_dir, exist_ok=True)
    config_path = os.path.join(model.log_dir, "config.json")
    config_to_json(config, train_set.class_names, config_path)
    print(f"Config and checkpoints go to {model.log_dir}")
    callbacks = [StopAfterMinutes(args.minutes)] if args.minutes else []
    learning_rate = args.learning_rate or config.LEARNING_RATE
    try:
        model.train(
            train_set,
            val_set,
            learning_rate=learning_rate,
            epochs=args.epochs,
            layers=args.layers,
            custom_callbacks=callbacks,
        )
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    last = model.find_last()
    print(f"Last checkpoint: {last}")
    print(f"Detect with: mrcnn detect IMAGES --config {config_path} --weights {last} --out detections")
    return EXIT_OK
