"""Mask R-CNN on MS COCO: dataset loader (with download), COCO-format results and evaluation, training.

    python samples/coco/coco.py train --dataset /data/coco --year 2017 --model coco
    python samples/coco/coco.py evaluate --dataset /data/coco --year 2017 --model last --limit 500

The dataset directory holds ``annotations/instances_<subset><year>.json`` and the images in
``<subset><year>/`` (minival and valminusminival use ``val<year>/``); ``--download True`` fetches
missing parts from cocodataset.org over HTTPS. Beyond Matterport's options: ``--model none`` (random
initialization), ``--epochs H,F,A`` (cumulative end epochs of the heads / 4+ / all stages, default
40,120,160), ``--config KEY=VALUE`` (repeatable; overrides a Config attribute, VALUE as JSON, a bare
word as a string, ``module:name`` for a callable such as BACKBONE), ``--eval-type bbox|segm``.
``--download`` parses True/False (Matterport's ``type=bool`` made any non-empty string, "False"
included, True).
Evaluation metrics come from ``mrcnn.evaluate`` (pycocotools' COCOeval).
"""

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
import zipfile

import numpy as np

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, ROOT_DIR)

from mrcnn import utils  # noqa: E402
from mrcnn.download import download_file  # noqa: E402
from mrcnn.evaluate import coco_metrics, detections_to_coco  # noqa: E402

# The sample's configs (Matterport's names) are shared with `mrcnn --config <sample>`: one copy.
from mrcnn.sample_configs import CocoConfig, CocoInferenceConfig  # noqa: E402
from samples import sample_utils  # noqa: E402

COCO_MODEL_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
DEFAULT_DATASET_YEAR = "2014"
DEFAULT_EPOCHS = (40, 120, 160)


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
    except ImportError as e:
        raise ImportError("The COCO sample needs pycocotools: pip install pycocotools") from e
    return COCO, mask_utils


def _image_subset(subset):
    """Image folder prefix of an annotation subset: minival and valminusminival are cut from val."""
    return "val" if subset in ("minival", "valminusminival") else subset


def extract_zip(zip_path, dest_dir):
    """Extract ``zip_path`` into ``dest_dir`` atomically per entry.

    Members are extracted into a temporary directory inside ``dest_dir``, then each top-level entry is
    renamed into place (a directory that already exists is merged file by file), so an interrupted
    extraction never leaves half-written files under their final names.
    """
    os.makedirs(dest_dir, exist_ok=True)
    staging = tempfile.mkdtemp(dir=dest_dir, prefix=".extract-")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
        for name in os.listdir(staging):
            _move_into(os.path.join(staging, name), os.path.join(dest_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(source, target):
    if os.path.isdir(source) and os.path.isdir(target):
        for name in os.listdir(source):
            _move_into(os.path.join(source, name), os.path.join(target, name))
    else:
        os.replace(source, target)


class CocoDataset(utils.Dataset):
    """MS COCO instances (source "coco"): class and image ids are COCO's category and image ids.

    ``DOWNLOAD_URL`` (images and the trainval annotation zips), ``MINIVAL_URLS`` and ``ALLOW_HTTP`` are
    the download locations and scheme policy used by ``auto_download``.
    """

    DOWNLOAD_URL = "https://images.cocodataset.org"
    MINIVAL_URLS = {
        "minival": "https://dl.dropboxusercontent.com/s/o43o90bna78omob/instances_minival2014.json.zip?dl=0",
        "valminusminival": "https://dl.dropboxusercontent.com/s/s3tw5zcg7395368/instances_valminusminival2014.json.zip?dl=0",
    }
    ALLOW_HTTP = False

    def load_coco(
        self,
        dataset_dir,
        subset,
        year=DEFAULT_DATASET_YEAR,
        class_ids=None,
        class_map=None,
        return_coco=False,
        auto_download=False,
    ):
        """Register the images of ``subset`` (train, val, minival, valminusminival, ...) of ``year``.

        Reads ``dataset_dir/annotations/instances_<subset><year>.json``; images are in
        ``dataset_dir/<subset><year>/`` (``val<year>/`` for minival and valminusminival). class_ids:
        COCO category ids to load (default: all); only images with at least one annotation of those
        classes are added (as Matterport). class_map is ignored. auto_download: fetch missing images and
        annotations first. Returns the pycocotools ``COCO`` object when return_coco. Call ``prepare()``
        afterwards.
        """
        COCO, _ = _pycocotools()
        year = str(year)
        if auto_download:
            self.auto_download(dataset_dir, subset, year)
        annotation_path = os.path.join(dataset_dir, "annotations", f"instances_{subset}{year}.json")
        image_dir = os.path.join(dataset_dir, f"{_image_subset(subset)}{year}")
        if not os.path.isfile(annotation_path):
            raise FileNotFoundError(
                f"COCO annotations not found: {annotation_path!r}. Expected dataset_dir/annotations/"
                f"instances_{subset}{year}.json with the images in {image_dir!r}; pass auto_download=True "
                "(command line: --download True) to fetch them."
            )
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(annotation_path)
        class_ids = sorted(class_ids) if class_ids else sorted(coco.getCatIds())
        image_ids = sorted({i for class_id in class_ids for i in coco.getImgIds(catIds=[class_id])})
        for class_id in class_ids:
            self.add_class("coco", class_id, coco.loadCats(class_id)[0]["name"])
        for i in image_ids:
            info = coco.imgs[i]
            self.add_image(
                "coco",
                image_id=i,
                path=os.path.join(image_dir, info["file_name"]),
                width=info["width"],
                height=info["height"],
                annotations=coco.loadAnns(coco.getAnnIds(imgIds=[i], catIds=class_ids, iscrowd=None)),
            )
        if return_coco:
            return coco

    def download_plan(self, dataDir, dataType, dataYear):
        """The (url, zip path, extract dir, path that exists once done) downloads that ``dataType`` needs."""
        year = str(dataYear)
        image_name = f"{_image_subset(dataType)}{year}"
        plan = [
            (
                f"{self.DOWNLOAD_URL}/zips/{image_name}.zip",
                os.path.join(dataDir, f"{image_name}.zip"),
                dataDir,
                os.path.join(dataDir, image_name),
            )
        ]
        annotation_dir = os.path.join(dataDir, "annotations")
        annotation_file = os.path.join(annotation_dir, f"instances_{dataType}{year}.json")
        if dataType in self.MINIVAL_URLS:
            zip_path = os.path.join(dataDir, f"instances_{dataType}{year}.json.zip")
            plan.append((self.MINIVAL_URLS[dataType], zip_path, annotation_dir, annotation_file))
        else:
            plan.append(
                (
                    f"{self.DOWNLOAD_URL}/annotations/annotations_trainval{year}.zip",
                    os.path.join(dataDir, f"annotations_trainval{year}.zip"),
                    dataDir,
                    annotation_file,
                )
            )
        return plan

    def auto_download(self, dataDir, dataType, dataYear):
        """Download and extract the images and annotations of ``dataType`` ``dataYear`` when missing.

        Each zip is downloaded atomically (``mrcnn.download.download_file``: HTTPS, progress bar, size
        check), extracted through a temporary directory, then deleted. Parts already present are skipped.
        minival and valminusminival exist for 2014 only.
        """
        if dataType in self.MINIVAL_URLS and str(dataYear) != "2014":
            raise ValueError(f"{dataType} exists only for 2014 (got year {dataYear}); use 'val' for 2017.")
        for url, zip_path, extract_dir, done_path in self.download_plan(dataDir, dataType, dataYear):
            if os.path.exists(done_path):
                continue
            print(f"Downloading {url} to {zip_path} ...")
            download_file(url, zip_path, allow_http=self.ALLOW_HTTP)
            print(f"Extracting {zip_path} ...")
            extract_zip(zip_path, extract_dir)
            os.remove(zip_path)
            if not os.path.exists(done_path):
                raise FileNotFoundError(f"{url} did not contain {os.path.relpath(done_path, dataDir)!r}.")

    def load_mask(self, image_id):
        """Instance masks (bool [H, W, N]) and internal class ids (int32 [N]) of a COCO image.

        Crowd annotations get negative class ids (training ignores them, COCO evaluation treats them as
        crowds); a crowd RLE whose size differs from the image becomes an all-ones mask, as in
        Matterport. Annotations with empty masks are skipped. An image without instances gives
        [H, W, 0] masks (Matterport returned the base class's empty [0, 0, 0] array).
        """
        info = self._check_image_id(image_id)
        if info["source"] != "coco":
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for annotation in info["annotations"]:
            class_id = self.map_source_class_id(f"coco.{annotation['category_id']}")
            mask = self.annToMask(annotation, height, width)
            if mask.max() < 1:
                continue
            if annotation["iscrowd"]:
                class_id = -class_id
                if mask.shape != (height, width):
                    mask = np.ones((height, width), dtype=bool)
            masks.append(mask.astype(bool))
            class_ids.append(class_id)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
        return np.stack(masks, axis=2), np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """The COCO explorer URL of a "coco" image."""
        info = self._check_image_id(image_id)
        if info["source"] == "coco":
            return f"https://cocodataset.org/#explore?id={info['id']}"
        return super().image_reference(image_id)

    def annToRLE(self, ann, height, width):
        """An annotation's segmentation (polygons, uncompressed or compressed RLE) as a compressed RLE."""
        _, mask_utils = _pycocotools()
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return segmentation

    def annToMask(self, ann, height, width):
        """An annotation's mask: uint8 [h, w] of 0/1 ([height, width] unless an RLE gives its own size)."""
        _, mask_utils = _pycocotools()
        rle = self.annToRLE(ann, height, width)
        if isinstance(rle.get("counts"), str):
            rle = dict(rle, counts=rle["counts"].encode("ascii"))
        return mask_utils.decode(rle)


############################################################
#  COCO evaluation
############################################################


def build_coco_results(dataset, image_ids, rois, class_ids, scores, masks):
    """COCO result dicts of one image's detections, recorded under each COCO image id in ``image_ids``.

    rois [N, 4] (y1, x1, y2, x2) pixels, exclusive y2/x2; class_ids [N] internal ids (mapped to COCO
    category ids); scores [N]; masks [H, W, N]. bbox is [x, y, w, h]; segmentation an RLE with str counts.
    """
    if rois is None:
        return []
    results = []
    for image_id in image_ids:
        results.extend(
            detections_to_coco(
                image_id,
                rois,
                class_ids,
                scores,
                masks,
                category_ids=lambda c: dataset.get_source_class_id(c, "coco"),
            )
        )
    return results


def evaluate_coco(model, dataset, coco, eval_type="bbox", limit=0, image_ids=None):
    """Detect on the dataset's images and print COCOeval's summary for ``eval_type`` ("bbox"/"segm").

    dataset: a prepared CocoDataset; coco: its pycocotools COCO (``load_coco(..., return_coco=True)``);
    limit: evaluate only the first ``limit`` images (0 = all); image_ids: internal ids (default: all).
    Prints prediction and total time; returns ``mrcnn.evaluate.coco_metrics``' dict.
    """
    import keras

    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        image_ids = image_ids[:limit]
    coco_image_ids = [dataset.image_info[i]["id"] for i in image_ids]
    start = time.time()
    prediction_time = 0.0
    results = []
    progress = keras.utils.Progbar(len(image_ids), unit_name="image")
    for i, image_id in enumerate(image_ids):
        image = dataset.load_image(image_id)
        t = time.time()
        r = model.detect([image], verbose=0)[0]
        prediction_time += time.time() - t
        results.extend(
            build_coco_results(
                dataset, coco_image_ids[i : i + 1], r["rois"], r["class_ids"], r["scores"], r["masks"]
            )
        )
        progress.add(1)
    metrics = coco_metrics(coco, results, eval_type, image_ids=coco_image_ids, verbose=True)
    print(
        f"Prediction time: {prediction_time:.2f} s. Average {prediction_time / max(len(image_ids), 1):.3f}"
        " s/image"
    )
    print(f"Total time: {time.time() - start:.2f} s")
    return metrics


############################################################
#  Training
############################################################


def train(model, dataset_dir, year, download=False, epochs=DEFAULT_EPOCHS):
    """Matterport's schedule: heads to epochs[0] at LEARNING_RATE, 4+ to epochs[1], all to epochs[2] at
    LEARNING_RATE / 10, with horizontal flips. Train on train (+ valminusminival for 2014), validate on
    minival (2014) or val."""
    from mrcnn import augment

    year = str(year)
    dataset_train = CocoDataset()
    dataset_train.load_coco(dataset_dir, "train", year=year, auto_download=download)
    if year == "2014":
        dataset_train.load_coco(dataset_dir, "valminusminival", year=year, auto_download=download)
    dataset_train.prepare()
    dataset_val = CocoDataset()
    val_subset = "minival" if year == "2014" else "val"
    dataset_val.load_coco(dataset_dir, val_subset, year=year, auto_download=download)
    dataset_val.prepare()
    augmentation = augment.Fliplr(0.5)
    learning_rate = model.config.LEARNING_RATE
    for stage, (layers, rate) in enumerate(
        [("heads", learning_rate), ("4+", learning_rate), ("all", learning_rate / 10)]
    ):
        print(f"Training stage {stage + 1}: {layers} to epoch {epochs[stage]}")
        model.train(
            dataset_train,
            dataset_val,
            learning_rate=rate,
            epochs=epochs[stage],
            layers=layers,
            augmentation=augmentation,
        )


############################################################
#  Command line
############################################################


def _parse_bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _parse_epochs(text):
    try:
        epochs = tuple(int(v) for v in text.split(","))
    except ValueError:
        epochs = ()
    if len(epochs) != 3 or not 0 < epochs[0] <= epochs[1] <= epochs[2]:
        raise argparse.ArgumentTypeError(
            f"--epochs takes three increasing end epochs like 40,120,160, got {text!r}"
        )
    return epochs


def weights_path(model, choice):
    """Weights file for ``--model``: coco (downloaded if missing), last, imagenet, none or a path."""
    key = choice.lower()
    if key == "coco":
        if not os.path.exists(COCO_MODEL_PATH):
            utils.download_trained_weights(COCO_MODEL_PATH)
        return COCO_MODEL_PATH
    if key == "last":
        return model.find_last()
    if key == "imagenet":
        return model.get_imagenet_weights()
    if key == "none":
        return None
    if not os.path.isfile(choice):
        raise FileNotFoundError(
            f"--model {choice!r}: no such weights file (or use coco, last, imagenet, none)."
        )
    return choice


def main(argv=None):
    """Command line: ``train`` or ``evaluate`` (see ``--help``); returns the exit code."""
    parser = argparse.ArgumentParser(description="Train Mask R-CNN on MS COCO or evaluate it.")
    parser.add_argument("command", metavar="<command>", help="'train' or 'evaluate' on MS COCO")
    parser.add_argument(
        "--dataset", required=True, metavar="/path/to/coco/", help="Directory of the MS-COCO dataset"
    )
    parser.add_argument(
        "--year",
        default=DEFAULT_DATASET_YEAR,
        metavar="<year>",
        help=f"Year of the MS-COCO dataset (2014 or 2017) (default={DEFAULT_DATASET_YEAR})",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="/path/to/weights.h5",
        help="Path to weights .h5 file or 'coco', 'last', 'imagenet', 'none'",
    )
    parser.add_argument(
        "--logs",
        default=DEFAULT_LOGS_DIR,
        metavar="/path/to/logs/",
        help="Logs and checkpoints directory (default=logs/)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=500,
        metavar="<image count>",
        help="Images to use for evaluation (default=500)",
    )
    parser.add_argument(
        "--download",
        type=_parse_bool,
        default=False,
        metavar="<True|False>",
        help="Automatically download and unzip MS-COCO files (default=False)",
    )
    parser.add_argument(
        "--epochs",
        type=_parse_epochs,
        default=DEFAULT_EPOCHS,
        metavar="H,F,A",
        help="End epochs of the heads, 4+ and all stages (default=40,120,160)",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE|JSON",
        help=sample_utils.CONFIG_HELP,
    )
    parser.add_argument(
        "--eval-type",
        choices=("bbox", "segm"),
        default="bbox",
        help="COCOeval type for 'evaluate' (default=bbox)",
    )
    args = parser.parse_args(argv)
    if args.command not in ("train", "evaluate"):
        print(f"'{args.command}' is not recognized. Use 'train' or 'evaluate'")
        return 2
    print("Command: ", args.command)
    print("Model: ", args.model)
    print("Dataset: ", args.dataset)
    print("Year: ", args.year)
    print("Logs: ", args.logs)
    print("Auto Download: ", args.download)

    model = sample_utils.build_model(parser, args, CocoConfig, CocoInferenceConfig)
    path = weights_path(model, args.model)
    if path is not None:
        print("Loading weights ", path)
        model.load_weights(path, by_name=True)

    if args.command == "train":
        train(model, args.dataset, args.year, args.download, args.epochs)
    else:
        dataset_val = CocoDataset()
        val_type = "val" if str(args.year) == "2017" else "minival"
        coco = dataset_val.load_coco(
            args.dataset, val_type, year=args.year, return_coco=True, auto_download=args.download
        )
        dataset_val.prepare()
        print(f"Running COCO evaluation on {args.limit} images.")
        evaluate_coco(model, dataset_val, coco, args.eval_type, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
