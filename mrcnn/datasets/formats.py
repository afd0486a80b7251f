"""Open a dataset in any supported format from a path: ``open_dataset(path, subset=None, **kwargs)``.

Formats: "coco" (COCO instances json), "via" (VIA 1.x/2.x json), "labelme" (a folder of labelme json
files, or one), "mask_folder" (DSB2018 layout: ``<id>/images/<id>.png`` + ``<id>/masks/*.png``).
"""

import glob
import json
import os

from mrcnn.datasets.coco import CocoJsonDataset, is_coco
from mrcnn.datasets.labelme import LabelmeDataset, is_labelme
from mrcnn.datasets.mask_folder import MaskFolderDataset, is_mask_folder
from mrcnn.datasets.via import ViaDataset, is_via

__all__ = ["FORMATS", "detect_format", "open_dataset"]

FORMATS = ("coco", "via", "labelme", "mask_folder")


def _sniff_json(path):
    """The format of one json file ("coco", "via", "labelme") or None."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    for name, test in (("coco", is_coco), ("labelme", is_labelme), ("via", is_via)):
        if test(data):
            return name
    return None


def _resolve_subset(path, subset):
    """COCO's ``path/annotations/instances_<subset>[year].json`` when there is one, else ``path/subset``."""
    exact = os.path.join(path, "annotations", f"instances_{subset}.json")
    matches = (
        [exact]
        if os.path.isfile(exact)
        else sorted(glob.glob(os.path.join(path, "annotations", f"instances_{subset}*.json")))
    )
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(f"subset {subset!r} of {path!r} is ambiguous: {matches}; pass one of them as path")
    candidate = os.path.join(path, subset)
    if os.path.exists(candidate):
        return candidate
    raise FileNotFoundError(
        f"subset {subset!r} not found in {path!r}: expected a folder or file "
        f"{candidate!r} or annotations/instances_{subset}*.json"
    )


def detect_format(path, subset=None):
    """(format, resolved path) of a dataset path; see the module docstring for the formats.

    path: a json file or a folder; subset: a sub-folder or sub-file name of ``path`` (e.g. "train"), or
    the ``<subset>`` of a COCO layout's ``annotations/instances_<subset>.json``. Raises
    FileNotFoundError for a missing path and ValueError when the format cannot be told (naming the
    candidates found).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset path not found: {path!r}")
    if subset:
        path = _resolve_subset(path, subset)
    if os.path.isfile(path):
        kind = _sniff_json(path) if path.lower().endswith(".json") else None
        if kind is None:
            raise ValueError(
                f"unknown annotation format: {path!r} is not a COCO, VIA 1.x/2.x or labelme "
                "json file. Supported: a COCO/VIA/labelme json file, a folder of labelme json "
                "files, or a DSB2018-style folder (<id>/images/, <id>/masks/)."
            )
        return kind, path
    if is_mask_folder(path):
        return "mask_folder", path
    jsons = sorted(glob.glob(os.path.join(path, "*.json")))
    if not jsons:
        jsons = sorted(glob.glob(os.path.join(path, "annotations", "*.json")))
    kinds = {j: _sniff_json(j) for j in jsons}
    labelme = [j for j, k in kinds.items() if k == "labelme"]
    single = [j for j, k in kinds.items() if k in ("coco", "via")]
    if labelme and not single:
        return "labelme", path
    if len(single) == 1 and not labelme:
        return kinds[single[0]], single[0]
    if single or labelme:
        found = ", ".join(f"{os.path.basename(j)} ({kinds[j]})" for j in single + labelme)
        raise ValueError(
            f"{path!r} holds several annotation files ({found}); pass the json file to use "
            "as the path, or a subset."
        )
    raise ValueError(
        f"unknown dataset format in folder {path!r}: found no COCO, VIA or labelme json and no "
        "<id>/images/ sub-folders (DSB2018 layout)."
    )


def open_dataset(path, subset=None, format=None, **kwargs):
    """Load and ``prepare()`` a dataset from a path, detecting its format (see ``detect_format``).

    format: skip detection ("coco", "via", "labelme" or "mask_folder"). kwargs go to the loader:
    ``CocoJsonDataset.load_coco_json`` (image_dir, class_ids), ``ViaDataset.load_via`` (image_dir,
    class_names, class_attribute), ``LabelmeDataset.load_labelme`` (class_names) or
    ``MaskFolderDataset.load_mask_folder`` (class_name, image_ids, exclude_ids).
    Returns the prepared ``mrcnn.datasets.base.Dataset`` subclass.
    """
    if format is None:
        format, path = detect_format(path, subset)
    else:
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
        path = os.fspath(path)
        if subset:
            path = _resolve_subset(path, subset)
    if format == "coco":
        dataset = CocoJsonDataset()
        dataset.load_coco_json(path, **kwargs)
    elif format == "via":
        if os.path.isdir(path):
            path = os.path.join(path, "via_region_data.json")
        dataset = ViaDataset()
        dataset.load_via(path, **kwargs)
    elif format == "labelme":
        dataset = LabelmeDataset()
        dataset.load_labelme(path, **kwargs)
    else:
        dataset = MaskFolderDataset()
        dataset.load_mask_folder(path, **kwargs)
    dataset.prepare()
    return dataset
