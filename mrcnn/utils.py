"""Mask R-CNN utilities: box and mask geometry, anchors, AP metrics, the Dataset base class, resizing.

Conventions: boxes are (y1, x1, y2, x2). Pixel boxes have exclusive (y2, x2); normalized boxes are in
[0, 1] as produced by ``norm_boxes`` (pixel (y2, x2) minus one, divided by (h - 1, w - 1)). Masks are
[H, W, N] with one channel per instance.

TensorFlow is imported lazily inside ``box_refinement_graph`` and ``batch_slice`` only, so importing this
module stays light.
"""

import logging
import math
import os

import numpy as np

from mrcnn.download import download_file

__all__ = [
    "RESNET_ARCHITECTURES",
    "compute_backbone_shapes",
    "config_callable",
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
    "unmold_mask",
    "generate_anchors",
    "generate_pyramid_anchors",
    "trim_zeros",
    "compute_matches",
    "compute_ap",
    "compute_ap_range",
    "compute_recall",
    "batch_slice",
    "download_trained_weights",
    "norm_boxes",
    "denorm_boxes",
    "resize",
]

COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"


############################################################
#  Bounding boxes
############################################################


def extract_bboxes(mask):
    """Tight boxes around instance masks.

    mask: [H, W, N] array (bool or numeric; nonzero = inside).
    Returns int32 [N, 4] pixel boxes (y1, x1, y2, x2) with exclusive y2/x2; all zeros for empty masks.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"extract_bboxes expects a mask of shape [H, W, N], got shape {mask.shape}")
    rows = mask.any(axis=1)  # [H, N]
    cols = mask.any(axis=0)  # [W, N]
    nonempty = rows.any(axis=0)
    y1 = rows.argmax(axis=0)
    y2 = rows.shape[0] - rows[::-1].argmax(axis=0)
    x1 = cols.argmax(axis=0)
    x2 = cols.shape[0] - cols[::-1].argmax(axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1) * nonempty[:, None]
    return boxes.astype(np.int32)


def _safe_divide(intersection, union):
    """intersection / union with 0 where union is 0 (degenerate boxes or empty masks)."""
    out = np.zeros(np.broadcast(intersection, union).shape, dtype=np.result_type(intersection, union, 1.0))
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box against many.

    box: [4] (y1, x1, y2, x2); boxes: [N, 4]; box_area: scalar; boxes_area: [N] (areas passed in so that
    callers can compute them once). Returns float [N]; 0 where both boxes have zero area.
    """
    boxes = np.asarray(boxes)
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + np.asarray(boxes_area) - intersection
    return _safe_divide(intersection, union)


def compute_overlaps(boxes1, boxes2):
    """IoU matrix between two box sets (vectorized by broadcasting).

    boxes1: [N1, 4], boxes2: [N2, 4], (y1, x1, y2, x2). Returns float64 [N1, N2].
    """
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)[None, :, :]
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    h = np.maximum(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0)
    w = np.maximum(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0)
    intersection = h * w
    return _safe_divide(intersection, area1 + area2 - intersection)


def compute_overlaps_masks(masks1, masks2):
    """IoU matrix between two mask sets, computed as one matrix product.

    masks1: [H, W, N1], masks2: [H, W, N2]; values > 0.5 count as inside. Returns float32 [N1, N2]
    (all zeros if either set is empty; 0 where both masks are empty).
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), dtype=np.float32)
    if masks1.shape[:-1] != masks2.shape[:-1]:
        raise ValueError(f"mask sets must share [H, W]: got {masks1.shape} and {masks2.shape}")
    m1 = (masks1 > 0.5).reshape(-1, n1).astype(np.float32)
    m2 = (masks2 > 0.5).reshape(-1, n2).astype(np.float32)
    area1 = m1.sum(axis=0)
    area2 = m2.sum(axis=0)
    intersection = m1.T @ m2
    union = area1[:, None] + area2[None, :] - intersection
    return _safe_divide(intersection, union).astype(np.float32)


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    boxes: [N, 4] (y1, x1, y2, x2), N > 0; scores: [N]; threshold: boxes overlapping a kept box with
    IoU > threshold are dropped. Returns int32 indices of kept boxes, highest score first.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.shape[0] == 0:
        raise ValueError("non_max_suppression needs at least one box; got an empty boxes array")
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        iou = compute_iou(boxes[best], boxes[rest], areas[best], areas[rest])
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Apply (dy, dx, log(dh), log(dw)) deltas to boxes.

    boxes: [N, 4] (y1, x1, y2, x2); deltas: [N, 4]. Returns float32 [N, 4].
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1).astype(np.float32)


def box_refinement_graph(box, gt_box):
    """TensorFlow version of ``box_refinement``: float32 tensor [N, 4] of (dy, dx, log(dh), log(dw)).

    Matterport's name for ``mrcnn.graph_ops.box_refinement_graph``, imported lazily so that
    ``import mrcnn.utils`` stays free of TensorFlow.
    """
    from mrcnn.graph_ops import box_refinement_graph as refinement

    return refinement(box, gt_box)


def box_refinement(box, gt_box):
    """Deltas (dy, dx, log(dh), log(dw)) that turn each ``box`` into its ``gt_box``.

    box, gt_box: [N, 4] (y1, x1, y2, x2), pixel or normalized (consistently). Returns float32 [N, 4].
    """
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    dy = (gt_box[:, 0] + 0.5 * gt_height - box[:, 0] - 0.5 * height) / height
    dx = (gt_box[:, 1] + 0.5 * gt_width - box[:, 1] - 0.5 * width) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1).astype(np.float32)


############################################################
#  Dataset
############################################################

# Attributes that exist only after Dataset.prepare().
_PREPARED_ATTRS = frozenset(
    {
        "num_classes",
        "class_ids",
        "class_names",
        "num_images",
        "_image_ids",
        "image_ids",
        "class_from_source_map",
        "image_from_source_map",
        "sources",
        "source_class_ids",
    }
)


class DatasetNotPreparedError(AttributeError):
    """Raised when a Dataset attribute that ``prepare()`` sets is read before ``prepare()`` was called."""


def _to_uint8_rgb(pil_image, path):
    """Convert a PIL image of any common mode to a uint8 [H, W, 3] array."""
    mode = pil_image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale (PNG/TIFF): scale 0..65535 to 0..255 with rounding.
        values = np.clip(np.asarray(pil_image).astype(np.float64), 0, 65535)
        gray = np.round(values / 257.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    try:
        rgb = pil_image.convert("RGB")
    except (ValueError, OSError) as e:
        raise ValueError(f"cannot convert image {path!r} (PIL mode {mode!r}) to RGB: {e}") from e
    return np.asarray(rgb, dtype=np.uint8)


class Dataset:
    """Base class for datasets: subclass it, register classes and images, then call ``prepare()``.

    Internal class ids are 0..num_classes-1 with 0 = background ("BG"); internal image ids are
    0..num_images-1. "source.id" strings (e.g. "coco.12") map a dataset's own ids to internal ids.

    Deviation from Matterport: attributes set by ``prepare()`` (num_classes, class_ids, class_names,
    num_images, image_ids, class_from_source_map, image_from_source_map, sources, source_class_ids)
    raise DatasetNotPreparedError (an AttributeError) naming ``prepare()`` when read before it, and
    methods given an unknown id raise a clear error instead of an IndexError/assert.
    """

    def __init__(self, class_map=None):
        """class_map is accepted for compatibility and ignored (as in Matterport)."""
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]

    def __getattr__(self, name):
        if name in _PREPARED_ATTRS:
            public = name.lstrip("_")
            raise DatasetNotPreparedError(
                f"{type(self).__name__}.{public} is not available yet: call dataset.prepare() after adding "
                "classes and images."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source`` (no "." in source); re-adding a pair is ignored."""
        if "." in source:
            raise ValueError(f"source name cannot contain a dot: {source!r} (it separates source and id)")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; extra keyword arguments are stored in its ``image_info`` entry."""
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    @staticmethod
    def _check_id(kind, value, table):
        """``table[value]`` after checking that ``value`` is an int id of ``table`` ("image" or "class")."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{kind}_id must be an int, got {type(value).__name__} {value!r}")
        if not 0 <= value < len(table):
            raise IndexError(
                f"unknown {kind}_id {value}: this dataset has {len(table)} {kind}s "
                f"(valid ids 0..{len(table) - 1})"
            )
        return table[value]

    def _check_image_id(self, image_id):
        return self._check_id("image", image_id, self.image_info)

    def _check_class_id(self, class_id):
        return self._check_id("class", class_id, self.class_info)

    def image_reference(self, image_id):
        """A link or description of the image for debugging; the base version returns ""."""
        self._check_image_id(image_id)
        return ""

    def prepare(self, class_map=None):
        """Build the id tables. Call after adding classes and images. class_map is ignored."""
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [info["name"].split(",")[0] for info in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": class_id for class_id, info in enumerate(self.class_info)
        }
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": image_id for image_id, info in enumerate(self.image_info)
        }
        self.sources = sorted({info["source"] for info in self.class_info})
        self.source_class_ids = {
            source: [i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source]
            for source in self.sources
        }

    def map_source_class_id(self, source_class_id):
        """Internal class id of a "source.id" string, e.g. "coco.12" -> 11."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError(
                f"unknown source class id {source_class_id!r}; expected 'source.id' as registered with "
                f"add_class, e.g. {next(iter(self.class_from_source_map))!r}"
            ) from None

    def get_source_class_id(self, class_id, source):
        """The source's own id of internal class ``class_id``; ValueError if it is another source's."""
        info = self._check_class_id(class_id)
        if info["source"] != source:
            raise ValueError(f"class_id {class_id} belongs to source {info['source']!r}, not {source!r}")
        return info["id"]

    @property
    def image_ids(self):
        """int array [num_images] of internal image ids (0..num_images-1)."""
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image, as given to ``add_image``."""
        return self._check_image_id(image_id)["path"]

    def load_image(self, image_id):
        """Load an image as uint8 RGB [H, W, 3].

        Grayscale (2-D or 1-channel), gray+alpha, RGBA (alpha dropped), palette (P mode), CMYK and 16-bit
        grayscale files (scaled 0..65535 -> 0..255) are all converted. Pixels are returned as stored
        (EXIF orientation is not applied, as in Matterport). A missing file raises FileNotFoundError and
        an unreadable one ValueError, both naming the path.
        """
        from PIL import Image, UnidentifiedImageError

        path = self.source_image_link(image_id)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found for image_id {image_id}: {path!r}")
        try:
            with Image.open(path) as pil_image:
                pil_image.load()
                return _to_uint8_rgb(pil_image, path)
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"cannot read image file {path!r} for image_id {image_id}: {e}") from e

    def load_mask(self, image_id):
        """Instance masks of an image: (bool [H, W, N], int32 class ids [N]).

        Subclasses must override this; the base version logs a warning and returns an empty [0, 0, 0]
        mask and no class ids.
        """
        self._check_image_id(image_id)
        logging.warning(
            "Dataset.load_mask() base version called: it returns no instances. Override load_mask() in "
            "your Dataset subclass."
        )
        return np.empty([0, 0, 0]), np.empty([0], np.int32)


############################################################
#  Anchors
############################################################


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors for one feature map.

    scales: anchor side(s) in pixels; ratios: width/height ratios; shape: (rows, cols) of the feature map;
    feature_stride: image pixels per feature cell; anchor_stride: place anchors every n cells.
    Heights are scale/sqrt(ratio), widths scale*sqrt(ratio); centres are at (row, col) * feature_stride
    (top-left of each cell). Returns float64 [rows'*cols'*len(ratios)*len(scales), 4] pixel boxes
    (y1, x1, y2, x2), positions in row-major order, ratios (then scales) innermost.
    """
    scales, ratios = np.meshgrid(np.asarray(scales, dtype=np.float64), np.asarray(ratios, dtype=np.float64))
    scales = scales.ravel()
    ratios = ratios.ravel()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)
    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    centers_y = np.repeat(shifts_y, len(shifts_x))  # row-major positions
    centers_x = np.tile(shifts_x, len(shifts_y))
    cy = centers_y[:, None]
    cx = centers_x[:, None]
    boxes = np.stack([cy - 0.5 * heights, cx - 0.5 * widths, cy + 0.5 * heights, cx + 0.5 * widths], axis=-1)
    return boxes.reshape(-1, 4)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors for all pyramid levels, one scale per level, concatenated level by level.

    scales: [L] anchor sides; feature_shapes: [L, 2]; feature_strides: [L]. Returns float64 [A, 4] pixel
    boxes (y1, x1, y2, x2).
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            f"need one scale, feature shape and stride per level; got {len(scales)} scales, "
            f"{len(feature_shapes)} shapes, {len(feature_strides)} strides"
        )
    anchors = [
        generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))
    ]
    return np.concatenate(anchors, axis=0)


############################################################
#  Metrics
############################################################


def trim_zeros(x):
    """Drop the all-zero rows (padding) of a 2-D array such as [N, 4] boxes."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def compute_matches(
    gt_boxes,
    gt_class_ids,
    gt_masks,
    pred_boxes,
    pred_class_ids,
    pred_scores,
    pred_masks,
    iou_threshold=0.5,
    score_threshold=0.0,
):
    """Match predictions to ground truth by mask IoU.

    gt_boxes [G, 4], gt_class_ids [G], gt_masks [H, W, G]; pred_* likewise with pred_scores [P]. Zero-padded
    box rows are trimmed. Predictions are taken by descending score; each one takes the unmatched GT with
    the highest IoU if that IoU >= iou_threshold and the classes agree.
    Returns (gt_match [G], pred_match [P], overlaps [P, G]): gt_match holds the matched prediction index
    (in score order) or -1, pred_match the matched GT index or -1, both float64; overlaps float32 mask IoUs
    with predictions in score order.

    Fix: Matterport compared score_threshold with IoUs; here predictions with score < score_threshold are
    left unmatched (pred_match -1). The default 0.0 gives Matterport's results.
    """
    gt_boxes = trim_zeros(gt_boxes)
    gt_masks = np.asarray(gt_masks)[..., : gt_boxes.shape[0]]
    pred_boxes = trim_zeros(pred_boxes)
    pred_scores = np.asarray(pred_scores)[: pred_boxes.shape[0]]
    order = np.argsort(-pred_scores, kind="stable")
    pred_class_ids = np.asarray(pred_class_ids)[order]
    pred_scores = pred_scores[order]
    pred_masks = np.asarray(pred_masks)[..., order]
    gt_class_ids = np.asarray(gt_class_ids)

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    pred_match = -np.ones(len(order))
    gt_match = -np.ones(gt_boxes.shape[0])
    for i in range(len(order)):
        if pred_scores[i] < score_threshold:
            continue
        for j in np.argsort(-overlaps[i], kind="stable"):
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(
    gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks, iou_threshold=0.5
):
    """Average precision at one mask-IoU threshold (VOC all-point interpolation).

    Arguments as in ``compute_matches``. Returns (mAP float, precisions [P+2], recalls [P+2], overlaps
    [P, G]); precisions and recalls carry sentinels (precision 0 at both ends, recall 0 and 1) and
    precisions are made monotonically non-increasing. With no ground truth, recall and AP are 0.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes,
        gt_class_ids,
        gt_masks,
        pred_boxes,
        pred_class_ids,
        pred_scores,
        pred_masks,
        iou_threshold,
    )
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float32) / max(len(gt_match), 1)
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    m_ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(
    gt_box,
    gt_class_id,
    gt_mask,
    pred_box,
    pred_class_id,
    pred_score,
    pred_mask,
    iou_thresholds=None,
    verbose=1,
):
    """Mean AP over IoU thresholds (default 0.50:0.05:0.95); prints each AP when verbose."""
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    aps = []
    for threshold in iou_thresholds:
        ap = compute_ap(
            gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask, threshold
        )[0]
        if verbose:
            print(f"AP @{threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Box recall at an IoU threshold.

    pred_boxes [P, 4], gt_boxes [G, 4]. Returns (recall: fraction of GT boxes that are the best match of
    some prediction with IoU >= iou, positive_ids: int indices of such predictions).
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if overlaps.size == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    iou_max = overlaps.max(axis=1)
    iou_argmax = overlaps.argmax(axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    recall = len(set(iou_argmax[positive_ids].tolist())) / overlaps.shape[1]
    return recall, positive_ids


############################################################
#  TensorFlow helper
############################################################


def batch_slice(inputs, graph_fn, batch_size, names=None):
    """Run ``graph_fn`` on each batch item and stack the results.

    inputs: a tensor or list of tensors sharing batch dimension ``batch_size``; graph_fn returns a tensor
    or a list/tuple of tensors per item. Returns the stacked tensor(s) ([batch_size, ...]); a single output
    is returned unwrapped. ``names`` name the stacked outputs.
    """
    import tensorflow as tf

    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    per_item = []
    for i in range(batch_size):
        result = graph_fn(*[x[i] for x in inputs])
        if not isinstance(result, (list, tuple)):
            result = [result]
        per_item.append(result)
    columns = list(zip(*per_item))
    if names is None:
        names = [None] * len(columns)
    stacked = [tf.stack(column, axis=0, name=name) for column, name in zip(columns, names)]
    return stacked[0] if len(stacked) == 1 else stacked


############################################################
#  Weights download, box normalization
############################################################


def download_trained_weights(
    coco_model_path,
    verbose=1,
    url=COCO_MODEL_URL,
    sha256=None,
    expected_size=None,
    timeout=60,
    allow_http=False,
):
    """Download the COCO-trained weights (or ``url``) to ``coco_model_path``.

    Uses ``mrcnn.download.download_file``: HTTPS only unless allow_http, streamed to a temporary file,
    verified against Content-Length and the optional expected_size / sha256, then moved into place; a
    failed download leaves nothing behind. verbose > 0 prints start/done messages and a progress bar.
    """
    if verbose > 0:
        print(f"Downloading pretrained model to {coco_model_path} ...")
    download_file(
        url,
        coco_model_path,
        sha256=sha256,
        expected_size=expected_size,
        progress=verbose > 0,
        allow_http=allow_http,
        timeout=timeout,
    )
    if verbose > 0:
        print("... done downloading pretrained model!")


def _box_scale_shift(shape):
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return scale, shift


def norm_boxes(boxes, shape):
    """Pixel boxes [..., 4] (y2/x2 exclusive) -> normalized float32 boxes: (boxes - [0,0,1,1]) / (h-1, w-1).

    shape: (height, width) of the image.
    """
    scale, shift = _box_scale_shift(shape)
    return ((np.asarray(boxes, dtype=np.float64) - shift) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes [..., 4] -> int32 pixel boxes: round(boxes * (h-1, w-1) + [0,0,1,1]).

    shape: (height, width) of the image.
    """
    scale, shift = _box_scale_shift(shape)
    return np.round(np.asarray(boxes, dtype=np.float64) * scale + shift).astype(np.int32)


############################################################
#  Pyramid shapes
############################################################

RESNET_ARCHITECTURES = {"resnet50": 5, "resnet101": 22}
"""Number of identity blocks of stage 4 for each supported ResNet depth."""


def config_callable(config, name):
    """``config.<name>`` as a plain callable: a function set as a class attribute comes back as a
    method bound to the config; unbind it so it is called with the documented arguments only."""
    value = getattr(config, name)
    if getattr(value, "__self__", None) is config and hasattr(value, "__func__"):
        return value.__func__
    return value


def compute_backbone_shapes(config, image_shape):
    """Spatial sizes of the pyramid levels for an input image.

    Args:
        config: a Config; uses BACKBONE, BACKBONE_STRIDES and (callable BACKBONE) COMPUTE_BACKBONE_SHAPE.
        image_shape: ``(H, W[, C])`` of the molded image.

    Returns:
        int array ``[len(BACKBONE_STRIDES), 2]`` of ``[ceil(H / s), ceil(W / s)]`` per stride ``s``; for a
        callable BACKBONE, whatever ``config.COMPUTE_BACKBONE_SHAPE(image_shape)`` returns.
    """
    if callable(config.BACKBONE):
        compute = config_callable(config, "COMPUTE_BACKBONE_SHAPE")
        if not callable(compute):
            raise ValueError(
                "config.BACKBONE is a callable, so config.COMPUTE_BACKBONE_SHAPE must be set to a function "
                "image_shape -> [[height, width] per pyramid level]."
            )
        return compute(image_shape)
    if config.BACKBONE not in RESNET_ARCHITECTURES:
        raise ValueError(
            f"config.BACKBONE {config.BACKBONE!r} is not supported; use one of "
            f"{sorted(RESNET_ARCHITECTURES)} or a callable with COMPUTE_BACKBONE_SHAPE."
        )
    height, width = image_shape[:2]
    return np.array([[math.ceil(height / s), math.ceil(width / s)] for s in config.BACKBONE_STRIDES])


# Pre- and post-processing moved to mrcnn.transform; Matterport's names stay importable from here.
from mrcnn.transform import (  # noqa: E402, F401
    RESIZE_MODES,
    expand_mask,
    minimize_mask,
    resize,
    resize_image,
    resize_mask,
    unmold_mask,
)
