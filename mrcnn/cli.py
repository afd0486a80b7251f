"""The ``mrcnn`` command: demo, train, detect, evaluate, export and inspect-weights.

    mrcnn demo --minutes 15
    mrcnn detect photos/ --weights mask_rcnn_coco.h5 --out detections
    mrcnn inspect-weights mask_rcnn_coco.h5

Exit codes: 0 success, 2 usage or user error (bad arguments, missing or unsuitable files; one line
``mrcnn: error: ...`` on stderr, no traceback), 1 unexpected failure (traceback printed), 130 interrupted.
Heavy modules (TensorFlow, Keras) are imported by the commands that need them, so ``--help`` is fast.
"""

import argparse
import collections
import json
import os
import re
import sys
import time
import traceback

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

COCO_WEIGHTS_PATH = os.path.join(os.path.expanduser("~"), ".keras", "models", "mask_rcnn_coco.h5")
"""Where ``--weights coco`` is downloaded when ./mask_rcnn_coco.h5 does not exist."""

SAMPLE_CONFIGS = {
    "coco": {"NAME": "coco", "IMAGES_PER_GPU": 2, "NUM_CLASSES": 81},
    "balloon": {
        "NAME": "balloon",
        "IMAGES_PER_GPU": 2,
        "NUM_CLASSES": 2,
        "STEPS_PER_EPOCH": 100,
        "DETECTION_MIN_CONFIDENCE": 0.9,
    },
    "nucleus": {
        "NAME": "nucleus",
        "IMAGES_PER_GPU": 6,
        "NUM_CLASSES": 2,
        "STEPS_PER_EPOCH": 105,
        "VALIDATION_STEPS": 4,
        "DETECTION_MIN_CONFIDENCE": 0.0,
        "BACKBONE": "resnet50",
        "IMAGE_RESIZE_MODE": "crop",
        "IMAGE_MIN_DIM": 512,
        "IMAGE_MAX_DIM": 512,
        "IMAGE_MIN_SCALE": 2.0,
        "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
        "POST_NMS_ROIS_TRAINING": 1000,
        "POST_NMS_ROIS_INFERENCE": 2000,
        "RPN_NMS_THRESHOLD": 0.9,
        "RPN_TRAIN_ANCHORS_PER_IMAGE": 64,
        "MEAN_PIXEL": (43.53, 39.56, 48.22),
        "USE_MINI_MASK": True,
        "MINI_MASK_SHAPE": (56, 56),
        "TRAIN_ROIS_PER_IMAGE": 128,
        "MAX_GT_INSTANCES": 200,
        "DETECTION_MAX_INSTANCES": 400,
    },
}
"""Matterport's sample configs (overrides of ``Config``), so an installed package has them by name.
"shapes" is ``mrcnn.datasets.shapes.ShapesFastConfig``."""

SAMPLE_INFERENCE_OVERRIDES = {"nucleus": {"IMAGE_RESIZE_MODE": "pad64", "RPN_NMS_THRESHOLD": 0.7}}
"""Per-sample changes for detection (Matterport's NucleusInferenceConfig)."""

SAMPLE_NAMES = ("shapes",) + tuple(SAMPLE_CONFIGS)


class UserError(Exception):
    """A problem with the user's input: reported as ``mrcnn: error: <message>`` with exit code 2."""


############################################################
#  Configs and class names
############################################################


def _sample_class_names(name):
    if name == "coco":
        from mrcnn.datasets.coco_names import COCO_CLASS_NAMES

        return list(COCO_CLASS_NAMES)
    if name == "shapes":
        from mrcnn.datasets.shapes import SHAPE_NAMES

        return ["BG", *SHAPE_NAMES]
    return ["BG", name]


def _resolve_callable(name, value):
    """The mrcnn function named by a ``to_dict`` placeholder "<callable mrcnn.module.function>"."""
    import importlib

    match = re.fullmatch(r"<callable (mrcnn(?:\.\w+)*)\.(\w+)>", value)
    if not match:
        raise UserError(
            f"config {name} is {value}: only functions of the mrcnn package can be named in a "
            "JSON config; use a Python Config subclass for other callables."
        )
    try:
        return getattr(importlib.import_module(match.group(1)), match.group(2))
    except (ImportError, AttributeError) as err:
        raise UserError(f"config {name} names {value}, which does not exist in this mrcnn version.") from err


def _read_config_json(path):
    """(Config subclass, attribute dict, class names or None) from a JSON file written by ``to_dict``.

    Besides Config attributes the file may hold CLASS_NAMES (list, "BG" first), as ``mrcnn train``
    writes it. Callable placeholders naming mrcnn functions (e.g. the shapes backbone) are resolved.
    """
    from mrcnn.config import Config

    try:
        with open(path) as f:
            values = json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f"--config {path} is not valid JSON ({err}).") from err
    if not isinstance(values, dict):
        raise UserError(
            f"--config {path} must hold a JSON object of config attributes, e.g. "
            '{"NAME": "mine", "NUM_CLASSES": 3}.'
        )
    class_names = values.pop("CLASS_NAMES", None)
    callables = {
        k: _resolve_callable(k, v)
        for k, v in values.items()
        if isinstance(v, str) and v.startswith("<callable ")
    }
    for key in callables:
        del values[key]
    base = type(str(values.get("NAME") or "JsonConfig"), (Config,), callables)
    return base, values, class_names


def load_config(spec, inference=False, **overrides):
    """(config, class names or None) for ``--config`` ``spec``: a JSON file, a sample name, or None (coco).

    inference: apply the sample's inference changes and detect one image at a time (GPU_COUNT 1,
    IMAGES_PER_GPU 1). overrides: further attributes, e.g. NUM_CLASSES=5 (derived values are
    recomputed). Raises UserError for an unknown name, a bad file or an invalid config.
    """
    from mrcnn.config import Config

    spec = "coco" if spec is None else spec
    values, class_names = {}, None
    if spec == "shapes":
        from mrcnn.datasets.shapes import ShapesFastConfig

        base, class_names = ShapesFastConfig, _sample_class_names(spec)
    elif spec in SAMPLE_CONFIGS:
        base = type(f"{spec.capitalize()}Config", (Config,), dict(SAMPLE_CONFIGS[spec]))
        class_names = _sample_class_names(spec)
        if inference:
            values.update(SAMPLE_INFERENCE_OVERRIDES.get(spec, {}))
    elif os.path.isfile(spec):
        base, file_values, class_names = _read_config_json(spec)
        values.update(file_values)
    else:
        raise UserError(
            f"--config {spec!r} is neither a JSON file nor a sample config name ({', '.join(SAMPLE_NAMES)})."
        )
    if inference:
        values.update(GPU_COUNT=1, IMAGES_PER_GPU=1)
    values.update(overrides)
    try:
        config = base.from_dict(values)
    except (ValueError, TypeError) as err:
        raise UserError(f"invalid config ({spec}): {err}") from err
    return config, class_names


def parse_class_names(text, num_classes):
    """Class names for ``--class-names``: comma-separated or a file with one name per line.

    With NUM_CLASSES - 1 names, "BG" is put first. Raises UserError when the count does not fit.
    """
    if os.path.isfile(text):
        with open(text) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [name.strip() for name in text.split(",")]
    if len(names) == num_classes - 1:
        names = ["BG", *names]
    if len(names) != num_classes:
        raise UserError(
            f"--class-names gives {len(names)} names but the config has "
            f"NUM_CLASSES={num_classes}; give {num_classes - 1} names (without the background) "
            f"or {num_classes} with 'BG' first."
        )
    return names


def _config_to_json(config, class_names, path):
    values = config.to_dict()
    values["CLASS_NAMES"] = list(class_names)
    with open(path, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)


############################################################
#  Weights files
############################################################


def _names_attr(attrs, key):
    """A Keras 2 list-of-names attribute as str, joining the ``key0, key1, ...`` chunks of long lists."""
    if key in attrs:
        raw = list(attrs[key])
    else:
        raw, chunk = [], 0
        while f"{key}{chunk}" in attrs:
            raw.extend(attrs[f"{key}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in raw]


def read_weights_layout(path):
    """[(layer name, [(weight name, shape tuple, dtype str), ...]), ...] of a Keras 2 layout HDF5 file.

    Layers without weights are left out; order is the file's. Reads with h5py only (no TensorFlow, so
    ``inspect-weights`` is quick). Raises UserError for a missing, non-HDF5 or non-Keras-2 file.
    """
    import h5py

    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 weights file (wrong format or an incomplete download).")
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        layer_names = _names_attr(root.attrs, "layer_names")
        if not layer_names:
            raise UserError(
                f"{path} has no layer_names: it is not a Keras 2 (Matterport layout) weights "
                "file (a Keras 3 .weights.h5 file has no layer names to inspect)."
            )
        layers = []
        for name in layer_names:
            group = root.get(name)
            names = _names_attr(group.attrs, "weight_names") if group is not None else []
            if names:
                layers.append((name, [(w, tuple(group[w].shape), str(group[w].dtype)) for w in names]))
    return layers


def describe_weights(path):
    """Layers, tensors and the likely config of an HDF5 weights file in Matterport's layout.

    Returns {"layers": ``read_weights_layout(path)``, "tensors": int, "parameters": int, "likely": dict}
    where "likely" may hold NUM_CLASSES (from mrcnn_class_logits), BACKBONE ("resnet50", "resnet101",
    "small_backbone" or "unknown"), TOP_DOWN_PYRAMID_SIZE, FPN_CLASSIF_FC_LAYERS_SIZE, POOL_SIZE,
    FPN_MASK_CONV_LAYERS_SIZE, ANCHORS_PER_LOCATION and "sample" (a matching ``--config`` name, if any).
    """
    import numpy as np

    layers = read_weights_layout(path)
    shapes = {w: shape for _, entries in layers for w, shape, _ in entries}
    likely = {}

    def kernel(layer):
        return shapes.get(f"{layer}/kernel:0")

    if kernel("mrcnn_class_logits"):
        likely["NUM_CLASSES"] = kernel("mrcnn_class_logits")[-1]
    stage4 = {m.group(1) for layer, _ in layers if (m := re.fullmatch(r"res4(\w+)_branch2a", layer))}
    if stage4:
        likely["BACKBONE"] = {6: "resnet50", 23: "resnet101"}.get(len(stage4), "unknown")
    elif any(layer.startswith("small_c") for layer, _ in layers):
        likely["BACKBONE"] = "small_backbone"
    else:
        likely["BACKBONE"] = "unknown"
    for key, layer, axis in [
        ("TOP_DOWN_PYRAMID_SIZE", "fpn_c5p5", -1),
        ("FPN_CLASSIF_FC_LAYERS_SIZE", "mrcnn_class_conv1", -1),
        ("POOL_SIZE", "mrcnn_class_conv1", 0),
        ("FPN_MASK_CONV_LAYERS_SIZE", "mrcnn_mask_conv1", -1),
    ]:
        if kernel(layer):
            likely[key] = kernel(layer)[axis]
    if kernel("rpn_class_raw"):
        likely["ANCHORS_PER_LOCATION"] = kernel("rpn_class_raw")[-1] // 2
    backbone, classes = likely.get("BACKBONE"), likely.get("NUM_CLASSES")
    sample = {
        ("resnet101", 81): "coco",
        ("small_backbone", 4): "shapes",
        ("resnet101", 2): "balloon",
        ("resnet50", 2): "nucleus",
    }.get((backbone, classes))
    if sample:
        likely["sample"] = sample
    tensors = sum(len(entries) for _, entries in layers)
    parameters = sum(int(np.prod(shape)) for _, entries in layers for _, shape, _ in entries)
    return {"layers": layers, "tensors": tensors, "parameters": parameters, "likely": likely}


def _backbone_label(config):
    from mrcnn.backbone import config_callable
    from mrcnn.datasets.shapes import small_backbone

    if isinstance(config.BACKBONE, str):
        return config.BACKBONE
    return "small_backbone" if config_callable(config, "BACKBONE") is small_backbone else "unknown"


def _config_hint(likely):
    """A sentence telling which --config fits weights with ``likely`` values."""
    parts = [f"{k}={v}" for k, v in likely.items() if k != "sample"]
    hint = f"The weights look like a config with {', '.join(parts)}"
    if "sample" in likely:
        return hint + f": pass --config {likely['sample']} (or the config JSON they were trained with)."
    return hint + ": pass --config with the JSON config they were trained with (e.g. LOG_DIR/config.json)."


def check_weights_fit(config, description, path):
    """Raise UserError naming the config to pass when the weights file cannot fill ``config``'s model."""
    likely = description["likely"]
    expected = {
        "NUM_CLASSES": config.NUM_CLASSES,
        "BACKBONE": _backbone_label(config),
        "TOP_DOWN_PYRAMID_SIZE": config.TOP_DOWN_PYRAMID_SIZE,
        "FPN_CLASSIF_FC_LAYERS_SIZE": config.FPN_CLASSIF_FC_LAYERS_SIZE,
        "POOL_SIZE": config.POOL_SIZE,
        "FPN_MASK_CONV_LAYERS_SIZE": getattr(config, "FPN_MASK_CONV_LAYERS_SIZE", 256),
        "ANCHORS_PER_LOCATION": len(config.RPN_ANCHOR_RATIOS),
    }
    wrong = [
        f"{k}={likely[k]} (config: {v})"
        for k, v in expected.items()
        if k in likely and likely[k] != "unknown" and v != "unknown" and likely[k] != v
    ]
    if wrong:
        raise UserError(
            f"weights {path} do not fit the config {config.NAME!r}: {'; '.join(wrong)}. "
            + _config_hint(likely)
        )


def resolve_weights(spec, model=None):
    """Path of ``--weights``: a file, "coco" (downloaded once), "last" (newest checkpoint of ``model``'s
    NAME under its model_dir) or "imagenet" (Keras' ResNet-50 file)."""
    if spec == "coco":
        if os.path.isfile("mask_rcnn_coco.h5"):
            return os.path.abspath("mask_rcnn_coco.h5")
        if not os.path.isfile(COCO_WEIGHTS_PATH):
            from mrcnn import utils

            os.makedirs(os.path.dirname(COCO_WEIGHTS_PATH), exist_ok=True)
            try:
                utils.download_trained_weights(COCO_WEIGHTS_PATH)
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


def build_inference_model(args, **overrides):
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
    print(f"Building the {config.NAME} model ({_backbone_label(config)}, NUM_CLASSES={config.NUM_CLASSES})")
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


def collect_images(paths):
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


def read_image(path):
    """uint8 RGB [H, W, 3] (grayscale and alpha images converted). Raises UserError if unreadable."""
    import numpy as np
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


def save_overlay(image, r, class_names, path):
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
    fig = visualize.display_instances(
        image, r["rois"], r["masks"], r["class_ids"], class_names, r["scores"], figsize=figsize, colors=colors
    )
    fig.subplots_adjust(left=0, right=1, top=1, bottom=0)
    fig.savefig(path, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)


def cmd_detect(args):
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


def cmd_evaluate(args):
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


def cmd_export(args):
    from mrcnn.export import export_saved_model

    model, _ = build_inference_model(args)
    try:
        path = export_saved_model(model, args.out, masks=args.masks, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as err:
        raise UserError(str(err)) from err
    print(f"Exported SavedModel to {path}")
    return EXIT_OK


def cmd_inspect_weights(args):
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


def cmd_demo(args):
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
    )
    return EXIT_OK


def cmd_train(args):
    from mrcnn import model as modellib
    from mrcnn.training import StopAfterMinutes
    from mrcnn.weights import CLASS_SPECIFIC_LAYERS

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
        exclude = CLASS_SPECIFIC_LAYERS if other_classes else None
        print(
            f"Loading weights {path}"
            + (f" (except {', '.join(CLASS_SPECIFIC_LAYERS)}: other classes)" if other_classes else "")
        )
        try:
            report = model.load_weights(path, by_name=True, exclude=exclude)
        except ValueError as err:
            raise UserError(f"{err} {_config_hint(likely)}") from err
        if not report["loaded"]:
            raise UserError(f"no layer of {path} matches the model. {_config_hint(likely)}")
    os.makedirs(model.log_dir, exist_ok=True)
    config_path = os.path.join(model.log_dir, "config.json")
    _config_to_json(config, train_set.class_names, config_path)
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


############################################################
#  Parser and entry point
############################################################


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _confidence(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


CONFIG_HELP = (
    f"a JSON config (Config.to_dict, e.g. LOG_DIR/config.json written by mrcnn train) or a sample "
    f"name: {', '.join(SAMPLE_NAMES)} (default: coco: ResNet-101, 81 classes)"
)


def build_parser():
    """The argparse parser of the ``mrcnn`` command and its subcommands."""
    from mrcnn import __version__, shapes_demo

    parser = argparse.ArgumentParser(
        prog="mrcnn",
        description="Mask R-CNN: train, detect, evaluate and export models.",
        epilog="Run 'mrcnn COMMAND --help' for a command's options. Exit codes: 0 ok, 2 usage or input "
        "error, 1 unexpected failure.",
    )
    parser.add_argument("--version", action="version", version=f"mrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, text, description=None):
        return sub.add_parser(name, help=text, description=description or text)

    p = add(
        "demo",
        "train a small model on synthetic shapes, evaluate it and draw its detections",
        "The README's main job: train from scratch on synthetic shapes for --minutes, print mask mAP "
        "on 100 held-out images and write OUT/shapes_detections.png.",
    )
    p.add_argument("--logs", default="logs", help="log and checkpoint directory (default: logs)")
    p.add_argument("--out", default=None, help="folder for shapes_detections.png (default: --logs)")
    shapes_demo.add_train_arguments(p)
    shapes_demo.add_evaluate_arguments(p)
    p.set_defaults(run=cmd_demo)

    p = add(
        "train",
        "train on a COCO, VIA, labelme or mask-folder dataset",
        "Train Mask R-CNN on your dataset. NUM_CLASSES comes from the dataset; LOG_DIR/config.json "
        "records the config and class names for mrcnn detect --config.",
    )
    p.add_argument(
        "--dataset", required=True, help="training data: COCO JSON, VIA JSON, labelme folder or mask folder"
    )
    p.add_argument("--val-dataset", help="validation data (default: the training data)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument(
        "--weights",
        help="initial weights: coco, last, imagenet or a .h5 path (default: random); "
        "class-specific layers are skipped when the file has other classes",
    )
    p.add_argument(
        "--layers",
        default="heads",
        help="layers to train: heads, 3+, 4+, 5+, all or a regex (default: heads)",
    )
    p.add_argument("--epochs", type=_positive_int, default=10, help="train to this epoch (default 10)")
    p.add_argument("--steps-per-epoch", type=_positive_int, help="default: the config's STEPS_PER_EPOCH")
    p.add_argument("--learning-rate", type=_positive_float, help="default: the config's LEARNING_RATE")
    p.add_argument(
        "--minutes", type=_positive_float, help="stop after this many minutes (keeps a checkpoint)"
    )
    p.add_argument("--logs", default="logs", help="log and checkpoint directory (default: logs)")
    p.set_defaults(run=cmd_train)

    p = add(
        "detect",
        "detect objects in images: overlay PNGs and a COCO results JSON",
        "Detect instances in images and folders of images. Writes OUT/<image>.png (masks, boxes, "
        "captions), OUT/results.json (COCO results) and OUT/images.json (their image ids and "
        "categories).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    p.add_argument("--weights", required=True, help="a .h5 weights file, coco (downloaded once) or last")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument(
        "--class-names",
        help="comma-separated names or a file with one per line (default: the "
        "config's; COCO names for the coco config)",
    )
    p.add_argument(
        "--min-confidence", type=_confidence, help="default: the config's DETECTION_MIN_CONFIDENCE"
    )
    p.add_argument("--logs", default="logs", help="where --weights last looks (default: logs)")
    p.set_defaults(run=cmd_detect)

    p = add("evaluate", "COCO metrics (bbox and mask AP) of a model on a dataset")
    p.add_argument("--dataset", required=True, help="COCO JSON, VIA JSON, labelme folder or mask folder")
    p.add_argument("--weights", required=True, help="a .h5 weights file, coco or last")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first LIMIT images")
    p.add_argument(
        "--min-confidence",
        type=_confidence,
        default=0.0,
        help="detection score threshold (default 0, as for COCO evaluation)",
    )
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--logs", default="logs", help="where --weights last looks (default: logs)")
    p.set_defaults(run=cmd_evaluate)

    p = add("export", "export a SavedModel for TF Serving")
    p.add_argument("--weights", required=True, help="a .h5 weights file, coco or last")
    p.add_argument("--out", required=True, help="SavedModel folder to create (e.g. models/mask_rcnn/1)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument(
        "--masks",
        choices=("full", "boxes", "both"),
        default="full",
        help="mask outputs: full-image, 28x28 per box, or both signatures (default full)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--logs", default="logs", help="where --weights last looks (default: logs)")
    p.set_defaults(run=cmd_export)

    p = add(
        "inspect-weights",
        "list a weights file's layers and guess its config",
        "Summarize an HDF5 weights file (Matterport layout): layer and tensor counts, parameters and "
        "the config it fits (NUM_CLASSES, backbone, head sizes).",
    )
    p.add_argument("file", help="a .h5 weights file")
    p.add_argument("--layers", action="store_true", help="also list every tensor with its shape and dtype")
    p.set_defaults(run=cmd_inspect_weights)
    return parser


def main(argv=None):
    """Run the ``mrcnn`` command with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except UserError as err:
        print(f"mrcnn: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mrcnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - last-resort report for bugs, with the traceback
        traceback.print_exc()
        print(
            f"mrcnn: unexpected failure ({type(err).__name__}: {err}); please report it with the "
            "traceback above.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
