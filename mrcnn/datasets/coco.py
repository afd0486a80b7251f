"""Any COCO-format instance json (polygons, compressed and uncompressed RLE), through pycocotools.

Crowd annotations (``iscrowd: 1``) get negative class ids, as in Matterport's CocoDataset: the training
pipeline uses them only to keep anchors and RoIs off crowd regions.

    ds = CocoJsonDataset()
    ds.load_coco_json("fruits_nuts/data/trainval.json")     # images found beside the json or in images/
    ds.prepare()
"""

import contextlib
import io
import os

import numpy as np

from mrcnn.datasets.base import Dataset, check_files_exist

__all__ = ["CocoJsonDataset", "is_coco", "BACKGROUND_NAMES"]

BACKGROUND_NAMES = ("_background_", "__background__")
_IMAGE_DIR_GUESSES = (".", "images", "JPEGImages", "..", os.path.join("..", "images"))


def is_coco(data):
    """True when the parsed json ``data`` looks like a COCO instances file."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and "annotations" in data
        and "categories" in data
    )


def _guess_image_dir(json_path, file_names):
    """The first folder holding the first image, of: the json's folder, images/, JPEGImages/, .., ../images
    and, for COCO's ``annotations/instances_<name>.json``, ``../<name>``."""
    base = os.path.dirname(os.path.abspath(json_path))
    stem = os.path.splitext(os.path.basename(json_path))[0]
    guesses = list(_IMAGE_DIR_GUESSES)
    if stem.startswith("instances_"):
        guesses.append(os.path.join("..", stem[len("instances_") :]))
    probe = file_names[0]
    for guess in guesses:
        folder = os.path.normpath(os.path.join(base, guess))
        if os.path.isfile(os.path.join(folder, probe)):
            return folder
    tried = ", ".join(os.path.normpath(os.path.join(base, g)) for g in guesses)
    raise FileNotFoundError(
        f"cannot find image {probe!r} of {json_path!r} (looked in {tried}); pass the "
        "folder that holds the images as image_dir=..."
    )


class CocoJsonDataset(Dataset):
    """Images, classes and instances of a COCO json file; masks are decoded on demand."""

    def load_coco_json(
        self,
        annotation_file,
        image_dir=None,
        class_ids=None,
        source="coco",
        return_coco=False,
        check_images=True,
    ):
        """Register the images and classes of a COCO instances json. Call ``prepare()`` afterwards.

        image_dir: folder that ``file_name`` is relative to (default: guessed, see ``_guess_image_dir``).
        class_ids: COCO category ids to load (default: all; images with none of them are left out, as in
            Matterport). Categories named ``_background_``/``__background__`` (labelme2coco writes one)
            are dropped when no annotation uses them.
        check_images: raise FileNotFoundError when an image file is missing (False: only for
            annotation-only uses such as evaluation; paths then default to the json's folder).
        Returns the ``pycocotools.coco.COCO`` object when return_coco is True.
        """
        from pycocotools.coco import COCO

        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(f"COCO annotation file not found: {annotation_file!r}")
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                coco = COCO(annotation_file)
            except (ValueError, KeyError, TypeError, AssertionError) as e:
                raise ValueError(f"{annotation_file!r} is not a COCO instances json: {e!r}") from e
        if class_ids is None:
            used = {a["category_id"] for a in coco.dataset["annotations"]}
            class_ids = [
                c
                for c in sorted(coco.getCatIds())
                if c in used or coco.loadCats(c)[0]["name"] not in BACKGROUND_NAMES
            ]
            image_ids = sorted(coco.imgs)
        else:
            class_ids = list(class_ids)
            unknown = [c for c in class_ids if c not in coco.cats]
            if unknown:
                raise ValueError(
                    f"class_ids {unknown} are not categories of {annotation_file!r} "
                    f"(it has {sorted(coco.cats)})"
                )
            image_ids = sorted({i for c in class_ids for i in coco.getImgIds(catIds=[c])})
        for class_id in class_ids:
            self.add_class(source, class_id, coco.loadCats(class_id)[0]["name"])

        images = coco.loadImgs(image_ids)
        if image_dir is None and images:
            try:
                image_dir = _guess_image_dir(annotation_file, [img["file_name"] for img in images])
            except FileNotFoundError:
                if check_images:
                    raise
                image_dir = os.path.dirname(os.path.abspath(annotation_file))
        image_dir = image_dir or ""
        paths = [os.path.join(image_dir, img["file_name"]) for img in images]
        if check_images:
            check_files_exist(paths, "images", annotation_file)
        for img, path in zip(images, paths):
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]], catIds=class_ids, iscrowd=None))
            self.add_image(
                source,
                image_id=img["id"],
                path=path,
                width=img["width"],
                height=img["height"],
                annotations=annotations,
                coco_url=img.get("coco_url"),
            )
        if return_coco:
            return coco

    def load_mask(self, image_id):
        """Instance masks: (bool [H, W, N], int32 class ids [N]); crowd instances have negative ids.

        Annotations whose mask is empty are skipped; a crowd mask of the wrong size becomes all ones
        (as in Matterport). No instances gives bool [H, W, 0] and int32 [0].
        """
        info = self._check_image_id(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            class_id = self.map_source_class_id(f"{info['source']}.{ann['category_id']}")
            mask = self.annToMask(ann, height, width)
            if not mask.any():
                continue
            if ann.get("iscrowd"):
                class_id = -class_id
                if mask.shape != (height, width):
                    mask = np.ones((height, width), dtype=bool)
            masks.append(mask)
            class_ids.append(class_id)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """The image's ``coco_url`` when the json has one, else its file path."""
        info = self._check_image_id(image_id)
        return info.get("coco_url") or info["path"]

    def annToRLE(self, ann, height, width):  # noqa: N802 (Matterport's name)
        """The annotation's segmentation as compressed RLE (polygons with < 3 points are ignored)."""
        from pycocotools import mask as mask_utils

        segm = ann["segmentation"]
        if isinstance(segm, list):  # polygons; pycocotools would read a 4-value polygon as a box
            polygons = [p for p in segm if len(p) >= 6]
            if not polygons:
                return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
            return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        if isinstance(segm.get("counts"), list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, *segm["size"])
        return segm

    def annToMask(self, ann, height, width):  # noqa: N802 (Matterport's name)
        """The annotation's mask, bool [H, W] (the RLE's own size for RLE segmentations)."""
        from pycocotools import mask as mask_utils

        return mask_utils.decode(self.annToRLE(ann, height, width)).astype(bool)
