"""Matterport's ``mrcnn.utils``, as a facade: every name it had, re-exported from the module that owns it.

Box geometry lives in ``mrcnn.boxes``, anchors in ``mrcnn.anchors``, AP metrics in ``mrcnn.metrics``,
``Dataset`` in ``mrcnn.datasets.base``, resizing and mask pasting in ``mrcnn.transform``, ``batch_slice``
in ``mrcnn.graph_ops`` and the weights download in ``mrcnn.download``. New code should import from those
modules; Matterport-style scripts (``from mrcnn import utils``; ``utils.Dataset``, ``utils.compute_ap``,
...) keep working.

Conventions: boxes are (y1, x1, y2, x2). Pixel boxes have exclusive (y2, x2); normalized boxes are in
[0, 1] as produced by ``norm_boxes``. Masks are [H, W, N] with one channel per instance.

Importing this module does not import TensorFlow: the ``*_graph`` ops import it when called, and
``batch_slice`` (whose module builds Keras layers) is loaded on first access.
"""

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors
from mrcnn.boxes import (
    apply_box_deltas,
    box_refinement,
    box_refinement_graph,
    compute_iou,
    compute_overlaps,
    compute_overlaps_masks,
    denorm_boxes,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
)
from mrcnn.datasets.base import Dataset
from mrcnn.download import COCO_MODEL_URL, download_trained_weights
from mrcnn.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall, trim_zeros
from mrcnn.transform import (  # noqa: F401  (RESIZE_MODES: not Matterport's, kept for old imports)
    RESIZE_MODES,
    expand_mask,
    minimize_mask,
    mold_mask,
    resize,
    resize_image,
    resize_mask,
    unmold_mask,
)

__all__ = [
    "COCO_MODEL_URL",
    "extract_bboxes",
    "compute_iou",
    "compute_overlaps",
    "compute_overlaps_masks",
    "non_max_suppression",
    "apply_box_deltas",
    "box_refinement_graph",
    "box_refinement",
    "Dataset",
    "resize_image",
    "resize_mask",
    "minimize_mask",
    "expand_mask",
    "mold_mask",
    "unmold_mask",
    "generate_anchors",
    "generate_pyramid_anchors",
    "trim_zeros",
    "compute_matches",
    "compute_ap",
    "compute_ap_range",
    "compute_recall",
    "batch_slice",  # noqa: F822  (resolved by __getattr__ below)
    "download_trained_weights",
    "norm_boxes",
    "denorm_boxes",
    "resize",
]


def __getattr__(name):
    """``batch_slice`` on first access: ``mrcnn.graph_ops`` imports TensorFlow and Keras."""
    if name == "batch_slice":
        from mrcnn.graph_ops import batch_slice

        return batch_slice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
