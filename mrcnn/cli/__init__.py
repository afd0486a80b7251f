"""The ``mrcnn`` command: demo, train, detect, evaluate, export and inspect-weights.

    mrcnn demo
    mrcnn detect photos/ --weights mask_rcnn_coco.h5 --out detections
    mrcnn inspect-weights mask_rcnn_coco.h5

Exit codes: 0 success, 2 usage or user error (bad arguments, missing or unsuitable files; one line
``mrcnn: error: ...`` on stderr, no traceback), 1 unexpected failure (traceback printed), 130 interrupted.
Heavy modules (TensorFlow, Keras) are imported by the commands that need them, so ``--help`` is fast.

Layout: this module builds the parser and runs a command; ``configs`` is the ``--config`` grammar (shared
with the sample scripts), ``commands`` the subcommands. The sample configs come from
``mrcnn.sample_configs`` (in the package, so an installed console script has them; the sample scripts
import the same classes), weights-file inspection from ``mrcnn.weights``.
"""

import argparse
import sys
import traceback

from mrcnn.cli import commands
from mrcnn.cli.commands import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, describe_weights
from mrcnn.cli.configs import CONFIG_ITEMS_HELP, UserError, load_config, parse_class_names

__all__ = ["main", "build_parser", "UserError", "load_config", "parse_class_names", "describe_weights"]


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


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``mrcnn`` command and its subcommands."""
    from mrcnn import __version__, shapes_demo
    from mrcnn.sample_configs import SAMPLES

    config_help = (
        f"a sample name: {', '.join(SAMPLES)} (default: coco: ResNet-101, 81 classes); or {CONFIG_ITEMS_HELP}"
    )

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

    def add_config(p):
        p.add_argument("--config", action="append", metavar="SAMPLE|JSON|NAME=VALUE", help=config_help)

    def add_model(p, weights_help):
        """--weights, --config and --logs of the commands that load a trained model."""
        p.add_argument("--weights", required=True, help=weights_help)
        add_config(p)
        p.add_argument("--logs", default="logs", help="where --weights last looks (default: logs)")

    p = add(
        "demo",
        "train a small model on synthetic shapes, evaluate it and draw its detections",
        "The README's main job: train from scratch on synthetic shapes until the validation mask mAP "
        "reaches --target (or for --minutes / --epochs), print mask mAP on 100 held-out images and write "
        "OUT/shapes_detections.png.",
    )
    p.add_argument("--logs", default="logs", help="log and checkpoint directory (default: logs)")
    p.add_argument("--out", default=None, help="folder for shapes_detections.png (default: --logs)")
    shapes_demo.add_train_arguments(p)
    shapes_demo.add_evaluate_arguments(p)
    p.set_defaults(run=commands.cmd_demo)

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
    add_config(p)
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
    p.set_defaults(run=commands.cmd_train)

    p = add(
        "detect",
        "detect objects in images: overlay PNGs and a COCO results JSON",
        "Detect instances in images and folders of images. Writes OUT/<image>.png (masks, boxes, "
        "captions), OUT/results.json (COCO results) and OUT/images.json (their image ids and "
        "categories).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    add_model(p, "a .h5 weights file, coco (downloaded once) or last")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--class-names",
        help="comma-separated names or a file with one per line (default: the "
        "config's; COCO names for the coco config)",
    )
    p.add_argument(
        "--min-confidence", type=_confidence, help="default: the config's DETECTION_MIN_CONFIDENCE"
    )
    p.set_defaults(run=commands.cmd_detect)

    p = add("evaluate", "COCO metrics (bbox and mask AP) of a model on a dataset")
    p.add_argument("--dataset", required=True, help="COCO JSON, VIA JSON, labelme folder or mask folder")
    add_model(p, "a .h5 weights file, coco or last")
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first LIMIT images")
    p.add_argument(
        "--min-confidence",
        type=_confidence,
        default=0.0,
        help="detection score threshold (default 0, as for COCO evaluation)",
    )
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.set_defaults(run=commands.cmd_evaluate)

    p = add("export", "export for serving: SavedModel, ONNX, TFLite/LiteRT or OpenVINO")
    add_model(p, "a .h5 weights file, coco or last")
    p.add_argument(
        "--format",
        choices=("saved_model", "onnx", "tflite", "openvino"),
        default="saved_model",
        help="saved_model (a folder, default), onnx (.onnx), tflite (.tflite) or openvino (.xml + .bin)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="what to create: a SavedModel folder (e.g. models/mask_rcnn/1) or a model file (model.onnx, "
        "model.tflite, model.xml)",
    )
    p.add_argument(
        "--masks",
        choices=("full", "boxes", "both"),
        default="full",
        help="mask outputs: full-image, 28x28 per box, or both signatures (SavedModel only; default full)",
    )
    p.add_argument(
        "--quantize",
        choices=("float16", "dynamic_int8"),
        help="tflite only: float16 weights or dynamic-range int8 weights (default: float32)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(run=commands.cmd_export)

    p = add(
        "inspect-weights",
        "list a weights file's layers and guess its config",
        "Summarize an HDF5 weights file (Matterport layout): layer and tensor counts, parameters and "
        "the config it fits (NUM_CLASSES, backbone, head sizes).",
    )
    p.add_argument("file", help="a .h5 weights file")
    p.add_argument("--layers", action="store_true", help="also list every tensor with its shape and dtype")
    p.set_defaults(run=commands.cmd_inspect_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
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
