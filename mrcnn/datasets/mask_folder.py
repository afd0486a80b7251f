"""A folder of per-instance mask PNGs in the Kaggle DSB2018 layout, one class.

    dataset_dir/<image_id>/images/<image_id>.png      the image (any format PIL reads)
    dataset_dir/<image_id>/masks/*.png                one file per instance; nonzero pixels are the instance

An image folder without ``masks/`` (a test set) has no instances.

    ds = MaskFolderDataset()
    ds.load_mask_folder("stage1_train", class_name="nucleus")
    ds.prepare()
"""

import os

import numpy as np

from mrcnn.datasets.base import Dataset, image_size

__all__ = ["MaskFolderDataset", "is_mask_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _image_file(image_dir, image_id):
    """The image of ``<image_id>/images/``: ``<image_id>.*`` or the folder's only image file."""
    folder = os.path.join(image_dir, image_id, "images")
    if not os.path.isdir(folder):
        return None
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    preferred = [f for f in files if os.path.splitext(f)[0] == image_id]
    if preferred:
        return os.path.join(folder, preferred[0])
    if len(files) == 1:
        return os.path.join(folder, files[0])
    return None


def is_mask_folder(path):
    """True when ``path`` has at least one ``<id>/images/`` sub-folder with an image in it."""
    if not os.path.isdir(path):
        return False
    return any(_image_file(path, d) for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


class MaskFolderDataset(Dataset):
    """Images and per-instance mask PNGs in the DSB2018 layout (see the module docstring)."""

    def load_mask_folder(
        self, dataset_dir, class_name="object", image_ids=None, exclude_ids=(), source="masks"
    ):
        """Register every ``<image_id>`` folder of ``dataset_dir`` (sorted). Call ``prepare()`` afterwards.

        class_name: the single class. image_ids: only these folders (each must exist); exclude_ids:
        folders to leave out (e.g. a validation split).
        """
        if not os.path.isdir(dataset_dir):
            raise FileNotFoundError(f"mask folder dataset not found: {dataset_dir!r}")
        found = sorted(d for d in os.listdir(dataset_dir) if os.path.isdir(os.path.join(dataset_dir, d)))
        if image_ids is None:
            image_ids = found
        else:
            image_ids = list(image_ids)
            missing = [i for i in image_ids if i not in found]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} image folders not found in {dataset_dir!r}: {missing[:5]}"
                )
        exclude = set(exclude_ids)
        self.add_class(source, 1, class_name)
        added = 0
        for image_id in image_ids:
            if image_id in exclude:
                continue
            path = _image_file(dataset_dir, image_id)
            if path is None:
                raise FileNotFoundError(
                    f"{os.path.join(dataset_dir, image_id)!r} has no image: expected "
                    f"images/{image_id}.png (or a single image file in images/)"
                )
            mask_dir = os.path.join(dataset_dir, image_id, "masks")
            self.add_image(
                source, image_id=image_id, path=path, mask_dir=mask_dir if os.path.isdir(mask_dir) else None
            )
            added += 1
        if not added:
            raise ValueError(f"no images in {dataset_dir!r}: expected <image_id>/images/<image_id>.png")

    def load_mask(self, image_id):
        """Instance masks: (bool [H, W, N], int32 class ids [N], all 1), one per PNG in ``masks/`` (sorted).

        Empty mask files are skipped; a mask whose size differs from the image raises ValueError.
        """
        from PIL import Image

        info = self._check_image_id(image_id)
        height, width = image_size(info["path"])
        masks = []
        if info["mask_dir"]:
            for name in sorted(os.listdir(info["mask_dir"])):
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(info["mask_dir"], name)
                with Image.open(path) as image:
                    mask = np.asarray(image)
                if mask.ndim == 3:  # colour masks: any nonzero colour channel (alpha ignored)
                    mask = mask[..., :3].any(axis=-1)
                if mask.shape != (height, width):
                    raise ValueError(
                        f"mask {path!r} is {mask.shape[0]}x{mask.shape[1]} but its image is {height}x{width}"
                    )
                if mask.any():
                    masks.append(mask.astype(bool))
        class_id = self.map_source_class_id(f"{info['source']}.1")
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.full([len(masks)], class_id, dtype=np.int32)

    def image_reference(self, image_id):
        """The image's file path."""
        return self._check_image_id(image_id)["path"]
