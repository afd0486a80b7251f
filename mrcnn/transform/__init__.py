"""Pre- and post-processing, written once: every step between a user's image and the graph, and back.

| step | numpy (``detect()``, training data) | TensorFlow (exported models) |
|---|---|---|
| resize + pad | ``resize_image``, ``resize_mask`` | ``resize_and_pad_graph`` |
| normalize + metas | ``mold_inputs`` (``mold_image``, ``compose_image_meta``) | ``mold_images_graph`` |
| image-meta layout | ``IMAGE_META_FIELDS``, ``parse_image_meta`` | ``parse_image_meta_graph`` |
| boxes back to the image | ``unmold_boxes``, ``unmold_detections`` | ``unmold_boxes_graph`` |
| masks back to the image | ``paste_masks`` (``unmold_mask`` for one) | ``paste_masks_graph`` |

Each TensorFlow form sits next to its numpy form in the same module and ``tests/test_transform.py``
holds the two equal. Boxes are (y1, x1, y2, x2): pixels with exclusive y2/x2 outside the graph,
normalized inside it.
"""

from mrcnn.transform.image_meta import (
    FIXED_META_SIZE,
    IMAGE_META_FIELDS,
    compose_image_meta,
    compose_image_meta_graph,
    image_meta_size,
    meta_field,
    parse_image_meta,
    parse_image_meta_graph,
)
from mrcnn.transform.molding import (
    as_image_list,
    check_image,
    check_pixels,
    mold_image,
    mold_images_graph,
    mold_inputs,
    mold_mask,
    unmold_image,
)
from mrcnn.transform.resizing import (
    RESIZE_MODES,
    resize,
    resize_and_pad_graph,
    resize_image,
    resize_image_for,
    resize_images_graph,
    resize_mask,
    resize_scale,
)
from mrcnn.transform.unmolding import (
    expand_mask,
    minimize_mask,
    paste_masks,
    paste_masks_graph,
    unmold_boxes,
    unmold_boxes_graph,
    unmold_detections,
    unmold_mask,
)

__all__ = [
    "FIXED_META_SIZE",
    "IMAGE_META_FIELDS",
    "RESIZE_MODES",
    "as_image_list",
    "check_image",
    "check_pixels",
    "compose_image_meta",
    "compose_image_meta_graph",
    "expand_mask",
    "image_meta_size",
    "meta_field",
    "minimize_mask",
    "mold_image",
    "mold_images_graph",
    "mold_inputs",
    "mold_mask",
    "parse_image_meta",
    "parse_image_meta_graph",
    "paste_masks",
    "paste_masks_graph",
    "resize",
    "resize_and_pad_graph",
    "resize_image",
    "resize_image_for",
    "resize_images_graph",
    "resize_mask",
    "resize_scale",
    "unmold_boxes",
    "unmold_boxes_graph",
    "unmold_detections",
    "unmold_image",
    "unmold_mask",
]
