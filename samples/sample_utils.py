"""Command-line pieces shared by the balloon, nucleus and coco samples: --weights and --config handling."""

import os

from mrcnn import utils
from mrcnn.cli.configs import CONFIG_ITEMS_HELP, parse_config_args
from mrcnn.download import DownloadError
from mrcnn.weights import CLASS_SPECIFIC_LAYERS

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
COCO_WEIGHTS_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")
COCO_WEIGHTS_URL = utils.COCO_MODEL_URL
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")

WEIGHTS_HELP = (
    "weights to start from: 'coco' (mask_rcnn_coco.h5, downloaded if missing), 'last' (newest "
    "checkpoint under --logs), 'imagenet' (ResNet-50 ImageNet weights, downloaded), 'none' "
    "(random initialization) or the path of a .h5 file"
)
CONFIG_HELP = f"change the sample's configuration: {CONFIG_ITEMS_HELP}"


def add_weights_and_logs_arguments(parser):
    """``--weights`` (required; see ``resolve_weights``) and ``--logs`` (default: logs/ in the repository)."""
    parser.add_argument("--weights", required=True, metavar="coco|last|imagenet|none|PATH", help=WEIGHTS_HELP)
    parser.add_argument(
        "--logs",
        default=DEFAULT_LOGS_DIR,
        metavar="/path/to/logs/",
        help="logs and checkpoints directory (default: logs/ in the repository)",
    )


def add_config_argument(parser):
    """The repeatable ``--config`` of the samples (read by ``build_model`` through ``make_config``)."""
    parser.add_argument("--config", action="append", default=[], metavar="NAME=VALUE|JSON", help=CONFIG_HELP)


def make_config(config_class, items):
    """An instance of ``config_class`` with the ``--config`` items (``NAME=VALUE`` overrides and/or JSON
    config files, see ``mrcnn.cli.configs``) applied and validated; raises ValueError for a bad item."""
    overrides = parse_config_args(items).values
    return config_class.from_dict(overrides) if overrides else config_class()


def resolve_weights(model, weights, coco_path=None, coco_url=None):
    """(path or None, exclude list or None) for a --weights value; downloads 'coco'/'imagenet' weights.

    None means random initialization ('none'). Raises FileNotFoundError for a missing file or no
    checkpoint ('last'), and DownloadError naming the URL and the fix when a download fails (offline).
    """
    choice = weights.lower()
    if choice == "none":
        return None, None
    if choice == "coco":
        path = coco_path or COCO_WEIGHTS_PATH
        if not os.path.isfile(path):
            url = coco_url or COCO_WEIGHTS_URL
            try:
                utils.download_trained_weights(path, url=url)
            except (DownloadError, OSError) as e:
                raise DownloadError(
                    f"cannot download the COCO weights from {url}: {e}. Without network access, copy "
                    f"mask_rcnn_coco.h5 to {path} or pass --weights PATH (or --weights none to train "
                    "from scratch)."
                ) from e
        return path, CLASS_SPECIFIC_LAYERS  # NUM_CLASSES-dependent layers of the 81-class file
    if choice == "last":
        return model.find_last(), None
    if choice == "imagenet":
        try:
            return model.get_imagenet_weights(), None
        except Exception as e:  # Keras' get_file raises a bare Exception on network errors
            raise DownloadError(
                f"cannot download the ImageNet ResNet-50 weights: {e}. Without network access put "
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 in ~/.keras/models/ or pass "
                "--weights PATH (or --weights none)."
            ) from e
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"weights file not found: {weights!r} (expected coco, last, imagenet, none "
            "or the path of a .h5 file)"
        )
    return weights, None


def load_weights(model, weights, coco_path=None, coco_url=None):
    """Resolve ``weights`` (see ``resolve_weights``) and load them by name; returns the path or None."""
    path, exclude = resolve_weights(model, weights, coco_path, coco_url)
    if path is None:
        print("Starting from randomly initialized weights")
        return None
    print(f"Loading weights {path}")
    model.load_weights(path, by_name=True, exclude=exclude)
    return path


def build_model(parser, args, train_config_class, inference_config_class):
    """The sample's ``MaskRCNN`` for ``args.command``: training mode with ``train_config_class`` for
    "train", else inference mode with ``inference_config_class``; ``--config`` overrides applied (a bad
    one is a usage error through ``parser``), the configuration printed, logs under ``args.logs``."""
    import mrcnn.model as modellib

    training = args.command == "train"
    try:
        config = make_config(train_config_class if training else inference_config_class, args.config)
    except ValueError as e:
        parser.error(str(e))
    config.display()
    return modellib.MaskRCNN(mode="training" if training else "inference", config=config, model_dir=args.logs)
