"""Ready-made ``Dataset`` subclasses: annotation-format adapters and the synthetic shapes data.

``open_dataset(path, subset=None, **kwargs)`` detects the format of a path and returns a prepared
dataset. No TensorFlow is imported here.
"""

from mrcnn.datasets.coco import CocoJsonDataset
from mrcnn.datasets.formats import FORMATS, detect_format, open_dataset
from mrcnn.datasets.labelme import LabelmeDataset
from mrcnn.datasets.mask_folder import MaskFolderDataset
from mrcnn.datasets.via import ViaDataset

__all__ = [
    "FORMATS",
    "CocoJsonDataset",
    "LabelmeDataset",
    "MaskFolderDataset",
    "ViaDataset",
    "detect_format",
    "open_dataset",
]
