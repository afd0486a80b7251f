"""Plotting and inspection helpers with Matterport's ``mrcnn.visualize`` names and signatures.

Conventions: images are [H, W, 3] RGB arrays (any numeric dtype, 0..255); pixel boxes are (y1, x1, y2, x2)
with exclusive y2/x2; instance masks are [H, W, N] with one channel per instance; colours are RGB(A)
tuples of floats in [0, 1].

Differences from Matterport, all additive or fixes:

* The matplotlib backend is never forced: matplotlib picks its own (Agg when there is no display), and a
  backend chosen by the user or Jupyter is kept. ``sys.path`` is not modified (``ROOT_DIR`` is defined
  as in Matterport, the parent of the working directory at import, but not added to it).
* Every plotting function but ``display_instances`` (which returns None, as Matterport's, so that a
  notebook cell ending with it shows the picture once) returns its ``matplotlib.figure.Figure``; all
  take a keyword-only ``save_path=None``: when given, a PNG is written and the figure is released from
  pyplot (the returned Figure stays usable). ``plt.show()`` is called only by functions that created
  their own figure, when nothing is saved and the backend is interactive (Jupyter's inline backend
  counts as interactive; end the notebook line with ``;`` to avoid displaying a returned figure twice).
* IPython is optional: ``display_table`` / ``display_weight_stats`` render HTML only in a Jupyter kernel
  and print a plain-text table otherwise.
* ``random_colors`` and ``draw_rois`` take a keyword-only ``seed`` for reproducible output.
* ``render_instances`` (new) burns masks, outlines and boxes into a uint8 copy of an image with numpy only.

Layout: ``drawing`` (colours and pixel drawing, numpy only), ``figures`` (matplotlib figures of images and
instances) and ``inspection`` (precision-recall and overlap plots, weight tables). Import the names from
``mrcnn.visualize`` as in Matterport; the sub-modules are an implementation detail.
"""

import os

from mrcnn.visualize.drawing import apply_mask, draw_box, random_colors, render_instances
from mrcnn.visualize.figures import (
    display_differences,
    display_images,
    display_instances,
    display_top_masks,
    draw_boxes,
    draw_rois,
)
from mrcnn.visualize.inspection import (
    display_table,
    display_weight_stats,
    plot_overlaps,
    plot_precision_recall,
)

# Matterport's module constant: the parent of the working directory at import (its notebooks ran from
# samples/, making this the repository root). Unlike Matterport it is not appended to sys.path.
ROOT_DIR = os.path.abspath("../")

__all__ = [
    "ROOT_DIR",
    "display_images",
    "random_colors",
    "apply_mask",
    "display_instances",
    "display_differences",
    "draw_rois",
    "draw_box",
    "display_top_masks",
    "plot_precision_recall",
    "plot_overlaps",
    "draw_boxes",
    "display_table",
    "display_weight_stats",
    "render_instances",
]
