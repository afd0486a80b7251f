"""Mask R-CNN for nucleus segmentation on the Kaggle 2018 Data Science Bowl data (DSB2018 layout).

    dataset_dir/stage1_train/<image_id>/images/<image_id>.png   and   .../masks/*.png (one per nucleus)
    dataset_dir/stage1_test/<image_id>/images/<image_id>.png   (masks/ optional)

Read with ``mrcnn.datasets.MaskFolderDataset``. "train" is stage1_train without the 25 VAL_IMAGE_IDS,
"val" those 25; any other subset is the sub-folder of that name.

Usage (run from anywhere):

    python samples/nucleus/nucleus.py train --dataset /path/to/dataset --subset train --weights imagenet
    python samples/nucleus/nucleus.py train --dataset /path/to/dataset --subset train --weights last
    python samples/nucleus/nucleus.py detect --dataset /path/to/dataset --subset stage1_test --weights last

``detect`` writes ``<results>/submit_YYYYmmddTHHMMSS/submit.csv`` (header ``ImageId,EncodedPixels``,
one run-length-encoded nucleus a line, no pixel in two nuclei) and a PNG of the detections per image.
"""

import argparse
import datetime
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from mrcnn.datasets.mask_folder import MaskFolderDataset  # noqa: E402
from mrcnn.download import DownloadError  # noqa: E402

# The sample's configs (Matterport's names) are shared with `mrcnn --config <sample>`: one copy.
from mrcnn.sample_configs import NUCLEUS_VAL_IMAGE_IDS as VAL_IMAGE_IDS  # noqa: E402
from mrcnn.sample_configs import NucleusConfig, NucleusInferenceConfig  # noqa: E402
from samples import sample_utils  # noqa: E402
from samples.sample_utils import COCO_WEIGHTS_PATH, DEFAULT_LOGS_DIR, ROOT_DIR  # noqa: E402,F401

RESULTS_DIR = os.path.join(ROOT_DIR, "results", "nucleus")


############################################################
#  Dataset
############################################################


class NucleusDataset(MaskFolderDataset):
    """DSB2018 nuclei, class "nucleus" (source "nucleus"); ``image_info[i]["id"]`` is the Kaggle ImageId."""

    def load_nucleus(self, dataset_dir, subset):
        """Register a subset: "train" (stage1_train minus VAL_IMAGE_IDS), "val" (VAL_IMAGE_IDS of
        stage1_train) or the name of any sub-folder of ``dataset_dir`` (stage1_train, stage1_test, ...).
        Call ``prepare()`` afterwards.
        """
        folder = os.path.join(dataset_dir, "stage1_train" if subset in ("train", "val") else subset)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"nucleus subset {subset!r}: folder {folder!r} not found")
        self.load_mask_folder(
            folder,
            class_name="nucleus",
            source="nucleus",
            image_ids=VAL_IMAGE_IDS if subset == "val" else None,
            exclude_ids=VAL_IMAGE_IDS if subset == "train" else (),
        )

    def image_reference(self, image_id):
        """The Kaggle ImageId of the image."""
        return self._check_image_id(image_id)["id"]


############################################################
#  Training
############################################################


def default_augmentation():
    """Flips, quarter turns and brightness/contrast (Matterport used imgaug; mrcnn.augment needs none)."""
    from mrcnn import augment

    return augment.Sequential(
        [
            augment.Fliplr(0.5),
            augment.Flipud(0.5),
            augment.Rot90(0.5),
            augment.Sometimes(0.5, augment.BrightnessContrast()),
        ]
    )


def train(model, dataset_dir, subset, val_subset=None, epochs=(20, 40), augmentation="default"):
    """Train the heads up to epoch ``epochs[0]``, then all layers up to ``epochs[1]``, at LEARNING_RATE.

    val_subset: default "val" when subset is "train", else ``subset`` itself (no held-out images).
    augmentation: "default" (``default_augmentation()``), None, or any augmenter ``model.train`` takes.
    """
    dataset_train = NucleusDataset()
    dataset_train.load_nucleus(dataset_dir, subset)
    dataset_train.prepare()
    if val_subset is None:
        val_subset = "val" if subset == "train" else subset
    dataset_val = NucleusDataset()
    dataset_val.load_nucleus(dataset_dir, val_subset)
    dataset_val.prepare()
    if augmentation == "default":
        augmentation = default_augmentation()
    print(
        f"Training on {dataset_train.num_images} images of {subset!r}, validating on "
        f"{dataset_val.num_images} of {val_subset!r}"
    )
    learning_rate = model.config.LEARNING_RATE
    print("Train network heads")
    model.train(
        dataset_train,
        dataset_val,
        learning_rate=learning_rate,
        epochs=epochs[0],
        augmentation=augmentation,
        layers="heads",
    )
    print("Train all layers")
    model.train(
        dataset_train,
        dataset_val,
        learning_rate=learning_rate,
        epochs=epochs[1],
        augmentation=augmentation,
        layers="all",
    )


############################################################
#  Run-length encoding (Kaggle: column-major, 1-based starts)
############################################################


def rle_encode(mask):
    """Run-length encode a 2-D mask: "start length start length ...".

    Pixels are numbered 1.. top to bottom, then left to right (column-major), as the DSB2018 submission
    format requires. An empty mask gives "".
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode needs a 2-D [H, W] mask, got shape {mask.shape}")
    pixels = np.concatenate([[False], mask.T.reshape(-1) != 0, [False]])
    edges = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))


def rle_decode(rle, shape):
    """Decode ``rle_encode``'s string into a bool [H, W] mask of ``shape`` (H, W).

    Raises ValueError for an odd count of numbers or runs outside the image.
    """
    height, width = shape[:2]
    values = np.array(rle.split(), dtype=np.int64)
    if values.size % 2:
        raise ValueError("RLE needs pairs of numbers (start length), got an odd count")
    starts, lengths = values[0::2] - 1, values[1::2]
    if np.any(starts < 0) or np.any(lengths < 0) or np.any(starts + lengths > height * width):
        raise ValueError(f"RLE run outside a {height}x{width} image")
    flat = np.zeros(height * width + 1, dtype=np.int32)
    np.add.at(flat, starts, 1)
    np.add.at(flat, starts + lengths, -1)
    return (np.cumsum(flat[:-1]) > 0).reshape(width, height).T


def mask_to_rle(image_id, mask, scores):
    """Submission lines "ImageId,RLE" for instance masks bool [H, W, N] with ``scores`` [N].

    Overlaps are removed: a pixel claimed by several instances goes to the highest-scoring one, and
    instances left empty are dropped. No instances gives the single line "ImageId," (as Kaggle expects).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [H, W, N], got shape {mask.shape}")
    if mask.shape[-1] == 0:
        return f"{image_id},"
    taken = np.zeros(mask.shape[:2], dtype=bool)
    lines = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        own = mask[:, :, i].astype(bool) & ~taken
        taken |= own
        if own.any():
            lines.append(f"{image_id},{rle_encode(own)}")
    return "\n".join(lines) if lines else f"{image_id},"


############################################################
#  Detection
############################################################


def detect(model, dataset_dir, subset, results_dir=RESULTS_DIR):
    """Detect nuclei in every image of ``subset`` and write a submission folder; returns its path.

    Writes ``results_dir/submit_YYYYmmddTHHMMSS/submit.csv`` and ``<ImageId>.png`` (the image with the
    detected outlines) for each image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrcnn import visualize

    dataset = NucleusDataset()
    dataset.load_nucleus(dataset_dir, subset)
    dataset.prepare()
    submit_dir = os.path.join(results_dir, f"submit_{datetime.datetime.now():%Y%m%dT%H%M%S}")
    os.makedirs(submit_dir, exist_ok=True)
    print(f"Running on {dataset.num_images} images of {os.path.join(dataset_dir, subset)}")
    lines = []
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        r = model.detect([image], verbose=0)[0]
        name = dataset.image_info[image_id]["id"]
        lines.append(mask_to_rle(name, r["masks"], r["scores"]))
        height, width = image.shape[:2]
        fig, ax = plt.subplots(1, figsize=(width / 80, height / 80))
        visualize.display_instances(
            image,
            r["rois"],
            r["masks"],
            r["class_ids"],
            dataset.class_names,
            r["scores"],
            ax=ax,
            show_bbox=False,
            show_mask=False,
            title=f"{len(r['class_ids'])} nuclei",
        )
        fig.savefig(os.path.join(submit_dir, f"{name}.png"), dpi=80)
        plt.close(fig)
    path = os.path.join(submit_dir, "submit.csv")
    with open(path, "w") as f:
        f.write("ImageId,EncodedPixels\n" + "\n".join(lines) + "\n")
    print(f"Saved to {submit_dir}")
    return submit_dir


############################################################
#  Command line
############################################################


def build_parser():
    parser = argparse.ArgumentParser(description="Mask R-CNN for nuclei counting and segmentation")
    parser.add_argument(
        "command", choices=["train", "detect"], metavar="<command>", help="'train' or 'detect'"
    )
    parser.add_argument("--dataset", metavar="/path/to/dataset/", help="root folder of the dataset")
    sample_utils.add_weights_and_logs_arguments(parser)
    parser.add_argument(
        "--subset",
        metavar="NAME",
        help="train: train (default), stage1_train, ...; detect: the sub-folder to run on",
    )
    parser.add_argument(
        "--val-subset",
        default=None,
        help="validation subset for train (default: val for --subset train, else the subset)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=2,
        default=[20, 40],
        metavar=("HEADS", "ALL"),
        help="last epoch of the heads stage and of the all-layers stage (default 20 40)",
    )
    parser.add_argument(
        "--results",
        default=RESULTS_DIR,
        help="detect output folder (default: results/nucleus in the repository)",
    )
    sample_utils.add_config_argument(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dataset:
        parser.error(f"{args.command} needs --dataset")
    if args.command == "detect" and not args.subset:
        parser.error("detect needs --subset (the sub-folder to run on, e.g. stage1_test)")
    model = sample_utils.build_model(parser, args, NucleusConfig, NucleusInferenceConfig)
    try:
        sample_utils.load_weights(model, args.weights)
        if args.command == "train":
            train(model, args.dataset, args.subset or "train", val_subset=args.val_subset, epochs=args.epochs)
        else:
            detect(model, args.dataset, args.subset, results_dir=args.results)
    except (FileNotFoundError, DownloadError) as e:
        print(f"nucleus.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
