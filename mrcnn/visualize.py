"""Plotting and inspection helpers with Matterport's ``mrcnn.visualize`` names and signatures.

Conventions: images are [H, W, 3] RGB arrays (any numeric dtype, 0..255); pixel boxes are (y1, x1, y2, x2)
with exclusive y2/x2; instance masks are [H, W, N] with one channel per instance; colours are RGB(A)
tuples of floats in [0, 1].

Differences from Matterport, all additive or fixes:

* The matplotlib backend is never forced: matplotlib picks its own (Agg when there is no display), and a
  backend chosen by the user or Jupyter is kept. ``sys.path`` is not modified.
* Every plotting function returns its ``matplotlib.figure.Figure`` and takes a keyword-only
  ``save_path=None``: when given, a PNG is written and the figure is released from pyplot (the returned
  Figure stays usable). ``plt.show()`` is called only by functions that created their own figure, when
  nothing is saved and the backend is interactive (Jupyter's inline backend counts as interactive; end
  the notebook line with ``;`` to avoid displaying the returned figure a second time).
* IPython is optional: ``display_table`` / ``display_weight_stats`` render HTML only in a Jupyter kernel
  and print a plain-text table otherwise.
* ``random_colors`` and ``draw_rois`` take a keyword-only ``seed`` for reproducible output.
* ``render_instances`` (new) burns masks, outlines and boxes into a uint8 copy of an image with numpy only.
"""

import colorsys
import itertools
import os
import random

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import lines, patches
from skimage.measure import find_contours

from mrcnn import utils
from mrcnn.metrics import compute_matches, trim_zeros

__all__ = [
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

# Built-in matplotlib backends that cannot open a window; plt.show() on them only warns.
_NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


############################################################
#  Figure helpers
############################################################


def _finish(fig, save_path, created):
    """Save ``fig`` as PNG when ``save_path`` is given, else show it if we created it and can show it.

    Returns ``fig``.
    """
    if save_path is not None:
        fig.savefig(os.fspath(save_path), format="png")
        if created:
            plt.close(fig)
    elif created and plt.get_backend().lower() not in _NON_INTERACTIVE_BACKENDS:
        plt.show()
    return fig


def _axes(ax, figsize):
    """(figure, axes, created): the given axes' figure, or a new single-axes figure of ``figsize``."""
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(1, figsize=figsize)
    return fig, ax, True


def _check_image(image):
    """``image`` as an array, checked to be [H, W, 3]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"image must be an RGB array of shape [H, W, 3], got shape {image.shape}; "
            "convert grayscale with np.stack([image] * 3, axis=-1)"
        )
    return image


def _pixel_box(box):
    """(y1, x1, y2, x2) as Python ints (rounded)."""
    return tuple(int(round(float(v))) for v in np.asarray(box).reshape(4))


def _rectangle(box, **style):
    """A matplotlib Rectangle along the pixel edges of a (y1, x1, y2, x2) box with exclusive y2/x2."""
    y1, x1, y2, x2 = (float(v) for v in box)
    return patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, facecolor="none", **style)


def _mask_contours(mask):
    """Outline polygons of a [H, W] mask as a list of [K, 2] (x, y) vertex arrays in pixel coordinates."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = mask
    # find_contours gives (row, col) in the padded frame; flip to (x, y) and undo the padding.
    return [np.fliplr(verts) - 1 for verts in find_contours(padded, 0.5)]


def _check_instances(image, boxes, masks, class_ids, class_names, scores, colors, captions):
    """Validate a detection set against ``image``; returns (boxes [N, 4], masks [H, W, N], class_ids [N]).

    Raises ValueError naming the mismatch when N differs between the inputs or a class id has no name.
    """
    boxes = np.asarray(boxes)
    boxes = np.zeros((0, 4)) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (y1, x1, y2, x2), got {boxes.shape}")
    n = boxes.shape[0]
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"masks must have shape [H, W, N] = [{image.shape[0]}, {image.shape[1]}, N] to match the image, "
            f"got {masks.shape}"
        )
    class_ids = np.asarray(class_ids).reshape(-1)
    lengths = {"boxes": n, "masks (last dim)": masks.shape[-1], "class_ids": class_ids.shape[0]}
    if scores is not None:
        lengths["scores"] = len(scores)
    if captions is not None:
        lengths["captions"] = len(captions)
    if len(set(lengths.values())) != 1:
        found = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"instance counts disagree ({found}); pass one entry per instance")
    if colors is not None and len(colors) < n:
        raise ValueError(f"colors has {len(colors)} entries for {n} instances; pass one colour per instance")
    bad = [int(c) for c in class_ids if not 0 <= int(c) < len(class_names)]
    if bad:
        raise ValueError(f"class ids {bad} have no entry in class_names (which has {len(class_names)} names)")
    return boxes, masks, class_ids


############################################################
#  Colours and pixel drawing
############################################################


def random_colors(N, bright=True, *, seed=None):
    """N distinct RGB colours (tuples of floats in [0, 1]) in shuffled order.

    Hues are evenly spaced in HSV with full saturation and value 1.0 (``bright``) or 0.7. The order is
    shuffled with ``random`` (the global generator, or ``random.Random(seed)`` when ``seed`` is given, which
    makes the result reproducible).
    """
    value = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / N, 1.0, value) for i in range(N)]
    if seed is None:
        random.shuffle(colors)
    else:
        random.Random(seed).shuffle(colors)
    return colors


def apply_mask(image, mask, color, alpha=0.5):
    """Alpha-blend ``color`` into ``image`` in place where ``mask == 1`` and return ``image``.

    image: [H, W, 3] array (0..255); mask: [H, W] (bool or 0/1); color: RGB floats in [0, 1] (scaled by 255).
    Blended value = (1 - alpha) * pixel + alpha * 255 * color. Integer images are rounded to the nearest
    integer (Matterport truncated).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] < 3:
        raise ValueError("image must be a numpy array of shape [H, W, 3]; it is modified in place")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} must equal the image's [H, W] {image.shape[:2]}")
    inside = mask == 1
    for c in range(3):
        blended = image[..., c][inside] * (1 - alpha) + alpha * float(color[c]) * 255
        if np.issubdtype(image.dtype, np.integer):
            blended = np.rint(blended)
        image[..., c][inside] = blended
    return image


def draw_box(image, box, color):
    """Burn a 2-pixel rectangle outline into ``image`` in place and return it.

    image: [H, W, C] array; box: (y1, x1, y2, x2) pixel box with exclusive y2/x2 (the outline lies inside
    the box; Matterport drew the bottom and right edges just outside it); color: a value per channel in the
    image's own scale (e.g. (255, 0, 0) for uint8). Parts outside the image are clipped.
    """
    y1, x1, y2, x2 = _pixel_box(box)
    height, width = image.shape[:2]
    y1, y2 = max(y1, 0), min(y2, height)
    x1, x2 = max(x1, 0), min(x2, width)
    if y2 <= y1 or x2 <= x1:
        return image
    image[y1 : min(y1 + 2, y2), x1:x2] = color
    image[max(y2 - 2, y1) : y2, x1:x2] = color
    image[y1:y2, x1 : min(x1 + 2, x2)] = color
    image[y1:y2, max(x2 - 2, x1) : x2] = color
    return image


def _mask_edge(mask):
    """Boolean [H, W]: pixels of ``mask`` with a 4-neighbour outside the mask (or on the image border)."""
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    return mask & ~interior


def render_instances(image, boxes, masks, class_ids, class_names, scores=None, colors=None):
    """Overlay instances on a copy of ``image`` with numpy only; returns uint8 [H, W, 3].

    Arguments as in ``display_instances`` (validated the same way). Each instance with a non-zero box gets
    its mask blended at alpha 0.5, its mask outline (mask pixels touching the background) and its 2-pixel
    box (inside the exclusive box) in solid colour. No text is drawn. Colours default to
    ``random_colors(N)``; pass ``colors`` for reproducible output.
    """
    image = _check_image(image)
    boxes, masks, class_ids = _check_instances(
        image, boxes, masks, class_ids, class_names, scores, colors, None
    )
    n = boxes.shape[0]
    colors = random_colors(n) if colors is None else colors
    canvas = image.astype(np.float64)
    for i in range(n):
        if not np.any(boxes[i]):
            continue
        rgb = np.asarray(colors[i][:3], dtype=np.float64)
        mask = masks[:, :, i] > 0.5
        apply_mask(canvas, mask, rgb, alpha=0.5)
        canvas[_mask_edge(mask)] = rgb * 255
        draw_box(canvas, boxes[i], rgb * 255)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


############################################################
#  Instance displays
############################################################


def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None, *, save_path=None):
    """Show images in a grid of ``cols`` columns (14 inches wide); each image is cast to uint8.

    images: list of [H, W] or [H, W, 3] arrays; titles: one string per image (default none).
    Returns the Figure.
    """
    if len(images) == 0:
        raise ValueError("display_images needs at least one image")
    titles = titles if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images; pass one title per image")
    rows = -(-len(images) // cols)
    fig = plt.figure(figsize=(14, 14 * rows / cols))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8), cmap=cmap, norm=norm, interpolation=interpolation)
    return _finish(fig, save_path, created=True)


def display_instances(
    image,
    boxes,
    masks,
    class_ids,
    class_names,
    scores=None,
    title="",
    figsize=(16, 16),
    ax=None,
    show_mask=True,
    show_bbox=True,
    colors=None,
    captions=None,
    *,
    save_path=None,
):
    """Draw detections on an image: dashed boxes, captions, translucent masks and mask outlines.

    image: [H, W, 3]; boxes: [N, 4] pixel boxes (y1, x1, y2, x2), exclusive y2/x2; masks: [H, W, N];
    class_ids: [N] ints indexing ``class_names``; scores: optional [N]; colors: optional N RGB(A) tuples
    (default ``random_colors(N)``); captions: optional N strings replacing "name score" (score to 3 dp).
    Instances with an all-zero box are skipped. With N = 0 a notice is printed and the bare image drawn.
    Draws into ``ax`` when given (never shown then). Returns the Figure.
    """
    image = _check_image(image)
    boxes, masks, class_ids = _check_instances(
        image, boxes, masks, class_ids, class_names, scores, colors, captions
    )
    n = boxes.shape[0]
    if n == 0:
        print("\n*** No instances to display *** \n")
    fig, ax, created = _axes(ax, figsize)
    colors = random_colors(n) if colors is None else colors

    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    canvas = image.astype(np.float64)
    for i in range(n):
        if not np.any(boxes[i]):
            continue  # e.g. an instance cropped away by augmentation
        color = colors[i]
        y1, x1 = float(boxes[i][0]), float(boxes[i][1])
        if show_bbox:
            ax.add_patch(_rectangle(boxes[i], linewidth=2, alpha=0.7, linestyle="dashed", edgecolor=color))
        if captions is None:
            label = class_names[int(class_ids[i])]
            caption = label if scores is None else f"{label} {float(scores[i]):.3f}"
        else:
            caption = captions[i]
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        mask = masks[:, :, i] > 0.5
        if show_mask:
            apply_mask(canvas, mask, color)
        for verts in _mask_contours(mask):
            ax.add_patch(patches.Polygon(verts, facecolor="none", edgecolor=color))
    ax.imshow(np.clip(canvas, 0, 255).astype(np.uint8))
    return _finish(fig, save_path, created)


def display_differences(
    image,
    gt_box,
    gt_class_id,
    gt_mask,
    pred_box,
    pred_class_id,
    pred_score,
    pred_mask,
    class_names,
    title="",
    ax=None,
    show_mask=True,
    show_box=True,
    iou_threshold=0.5,
    score_threshold=0.5,
    *,
    save_path=None,
):
    """Ground truth (green) and predictions (red) on one image; predictions captioned "score / IoU".

    gt_box [G, 4], gt_class_id [G], gt_mask [H, W, G]; pred_box [P, 4], pred_class_id [P], pred_score [P],
    pred_mask [H, W, P]. Zero box rows (padding) are dropped. Matching is ``metrics.compute_matches`` (mask
    IoU); the IoU shown is that of the matched GT, or the best overlap when unmatched (0 with no GT).
    Fix: Matterport paired matches (in score order) with predictions in input order; here predictions are
    sorted by score first so captions belong to the right boxes. Returns the Figure.
    """
    gt_box = trim_zeros(np.asarray(gt_box).reshape(-1, 4))
    gt_class_id = np.asarray(gt_class_id).reshape(-1)[: len(gt_box)]
    gt_mask = np.asarray(gt_mask)[..., : len(gt_box)]
    pred_box = trim_zeros(np.asarray(pred_box).reshape(-1, 4))
    order = np.argsort(-np.asarray(pred_score, dtype=np.float64).reshape(-1)[: len(pred_box)], kind="stable")
    pred_box = pred_box[order]
    pred_class_id = np.asarray(pred_class_id).reshape(-1)[order]
    pred_score = np.asarray(pred_score, dtype=np.float64).reshape(-1)[order]
    pred_mask = np.asarray(pred_mask)[..., order]

    gt_match, pred_match, overlaps = compute_matches(
        gt_box,
        gt_class_id,
        gt_mask,
        pred_box,
        pred_class_id,
        pred_score,
        pred_mask,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
    )
    captions = [""] * len(gt_box)
    for i, score in enumerate(pred_score):
        if pred_match[i] > -1:
            iou = overlaps[i, int(pred_match[i])]
        else:
            iou = overlaps[i].max() if overlaps.shape[1] else 0.0
        captions.append(f"{score:.2f} / {iou:.2f}")
    colors = [(0, 1, 0, 0.8)] * len(gt_box) + [(1, 0, 0, 1)] * len(pred_box)
    return display_instances(
        image,
        np.concatenate([gt_box, pred_box]),
        np.concatenate([gt_mask, pred_mask], axis=-1),
        np.concatenate([gt_class_id, pred_class_id]),
        class_names,
        np.concatenate([np.zeros(len(gt_box)), pred_score]),
        title=title,
        ax=ax,
        show_mask=show_mask,
        show_bbox=show_box,
        colors=colors,
        captions=captions,
        save_path=save_path,
    )


def draw_rois(
    image, rois, refined_rois, mask, class_ids, class_names, limit=10, *, seed=None, save_path=None
):
    """Show up to ``limit`` randomly chosen RoIs (dashed; gray for background) and, for positive ones,
    their refined box (solid), a line between the two top-left corners, the class name and the mask.

    image: [H, W, 3]; rois, refined_rois: [N, 4] pixel boxes; mask: [N, h, w] per-RoI masks in the RoI's
    frame (pasted with ``utils.unmold_mask``); class_ids: [N] (0 = background). Prints the positive and
    negative counts and the positive ratio. ``seed`` makes the subset and colours reproducible.
    Returns the Figure.
    """
    image = _check_image(image)
    rois = np.asarray(rois).reshape(-1, 4)
    refined_rois = np.asarray(refined_rois).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1)
    if not len(rois) == len(refined_rois) == len(class_ids) == len(mask):
        raise ValueError(
            f"rois ({len(rois)}), refined_rois ({len(refined_rois)}), mask ({len(mask)}) and class_ids "
            f"({len(class_ids)}) must have one entry per RoI"
        )
    rng = np.random.default_rng(seed)
    n = len(rois)
    ids = rng.choice(n, limit, replace=False) if n > limit else np.arange(n)

    fig, ax = plt.subplots(1, figsize=(12, 12))
    ax.set_title(f"Showing {len(ids)} random ROIs out of {n}" if n > limit else f"{n} ROIs")
    height, width = image.shape[:2]
    ax.set_ylim(height + 20, -20)
    ax.set_xlim(-50, width + 20)
    ax.axis("off")

    canvas = image.astype(np.float64)
    for i in ids:
        color = rng.random(3)
        class_id = int(class_ids[i])
        ax.add_patch(
            _rectangle(rois[i], linewidth=2, linestyle="dashed", edgecolor=color if class_id else "gray")
        )
        if class_id:
            ry1, rx1 = float(refined_rois[i][0]), float(refined_rois[i][1])
            ax.add_patch(_rectangle(refined_rois[i], linewidth=2, edgecolor=color))
            ax.add_line(lines.Line2D([float(rois[i][1]), rx1], [float(rois[i][0]), ry1], color=color))
            ax.text(rx1, ry1 + 8, class_names[class_id], color="w", size=11, backgroundcolor="none")
            apply_mask(canvas, utils.unmold_mask(mask[i], rois[i], image.shape), color)
    ax.imshow(np.clip(canvas, 0, 255).astype(np.uint8))

    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    print(f"Positive Ratio: {positives / max(n, 1):.2f}")
    return _finish(fig, save_path, created=True)


def display_top_masks(image, mask, class_ids, class_names, limit=4, *, save_path=None):
    """The image followed by ``limit`` panels: for the classes with the largest total mask area, all their
    instances labelled 1..k (panels beyond the classes present are blank and titled "-").

    image: [H, W, 3]; mask: [H, W, N]; class_ids: [N]. Returns the Figure (from ``display_images``).
    """
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != len(class_ids):
        raise ValueError(
            f"mask must be [H, W, N] with N = len(class_ids) = {len(class_ids)}, got {mask.shape}"
        )
    to_display = [image]
    titles = [f"H x W={image.shape[0]}x{image.shape[1]}"]
    unique_ids = np.unique(class_ids)
    areas = [float(np.sum(mask[:, :, class_ids == c])) for c in unique_ids]
    ranked = sorted(zip(unique_ids, areas), key=lambda pair: pair[1], reverse=True)
    top_ids = [int(c) for c, area in ranked if area > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        instances = mask[:, :, class_ids == class_id]
        to_display.append(np.sum(instances * np.arange(1, instances.shape[-1] + 1), axis=-1))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r", save_path=save_path)


############################################################
#  Metrics plots
############################################################


def plot_precision_recall(AP, precisions, recalls, *, save_path=None):
    """Precision-recall curve titled with the AP (as from ``metrics.compute_ap``). Returns the Figure."""
    fig, ax = plt.subplots(1)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {float(AP):.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)
    return _finish(fig, save_path, created=True)


def plot_overlaps(
    gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold=0.5, *, save_path=None
):
    """Grid of IoUs between predictions (rows) and ground truth (columns), labelled "match" (same class)
    or "wrong" where IoU > ``threshold``.

    Background (class 0) entries are dropped from both id lists (and from ``pred_scores``) first;
    ``overlaps`` must then be [P, G] as returned by ``metrics.compute_matches``. Returns the Figure.
    """
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    pred_class_ids = np.asarray(pred_class_ids).reshape(-1)
    pred_scores = np.asarray(pred_scores).reshape(-1)
    if len(pred_scores) != len(pred_class_ids):
        raise ValueError(f"got {len(pred_scores)} pred_scores for {len(pred_class_ids)} pred_class_ids")
    keep = pred_class_ids != 0
    pred_class_ids, pred_scores = pred_class_ids[keep], pred_scores[keep]
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    overlaps = np.asarray(overlaps, dtype=np.float64)
    if overlaps.shape != (len(pred_class_ids), len(gt_class_ids)):
        raise ValueError(
            f"overlaps has shape {overlaps.shape}, expected [P, G] = "
            f"[{len(pred_class_ids)}, {len(gt_class_ids)}] (non-background predictions x ground truth)"
        )

    fig, ax = plt.subplots(1, figsize=(12, 10))
    ax.imshow(overlaps, cmap=plt.cm.Blues, vmin=0, vmax=1)
    ax.set_yticks(
        np.arange(len(pred_class_ids)),
        [f"{class_names[int(c)]} ({s:.2f})" for c, s in zip(pred_class_ids, pred_scores)],
    )
    ax.set_xticks(np.arange(len(gt_class_ids)), [class_names[int(c)] for c in gt_class_ids], rotation=90)
    half = overlaps.max() / 2.0 if overlaps.size else 0.0
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        label = ""
        if overlaps[i, j] > threshold:
            label = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        ax.text(
            j,
            i,
            f"{overlaps[i, j]:.3f}\n{label}",
            horizontalalignment="center",
            verticalalignment="center",
            fontsize=9,
            color="white" if overlaps[i, j] > half else "black",
        )
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    fig.tight_layout()
    return _finish(fig, save_path, created=True)


def draw_boxes(
    image,
    boxes=None,
    refined_boxes=None,
    masks=None,
    captions=None,
    visibilities=None,
    title="",
    ax=None,
    *,
    save_path=None,
):
    """Draw boxes, refined boxes (joined to their originals by a line), captions and masks.

    image: [H, W, 3]; boxes, refined_boxes: [N, 4] pixel boxes (at least one of them); masks: [H, W, N];
    captions: N strings; visibilities: N values in {0, 1, 2} = gray dotted, coloured dotted, coloured solid
    (default 1); refined boxes are drawn only for visibility > 0. Draws into ``ax`` when given (never shown
    then), else into a new 12x12 inch figure. Returns the Figure.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes needs boxes or refined_boxes (or both)")
    image = _check_image(image)
    n = len(boxes) if boxes is not None else len(refined_boxes)
    for name, value in (
        ("refined_boxes", refined_boxes),
        ("captions", captions),
        ("visibilities", visibilities),
    ):
        if value is not None and len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} boxes; pass one per box")
    if masks is not None and np.shape(masks) != (*image.shape[:2], n):
        raise ValueError(f"masks must be [H, W, N] = {(*image.shape[:2], n)}, got {np.shape(masks)}")
    fig, ax, created = _axes(ax, (12, 12))
    colors = random_colors(n)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    gray = (0.5, 0.5, 0.5)
    styles = {0: (gray, "dotted", 0.5), 1: (None, "dotted", 1.0), 2: (None, "solid", 1.0)}
    canvas = image.astype(np.float64)
    for i in range(n):
        visibility = int(visibilities[i]) if visibilities is not None else 1
        if visibility not in styles:
            raise ValueError(f"visibilities[{i}] = {visibility}; use 0, 1 or 2")
        color, style, alpha = styles[visibility]
        color = color or colors[i]
        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            ax.add_patch(_rectangle(boxes[i], linewidth=2, alpha=alpha, linestyle=style, edgecolor=color))
        if refined_boxes is not None and visibility > 0:
            ax.add_patch(_rectangle(refined_boxes[i], linewidth=2, edgecolor=color))
            if boxes is not None:
                ys = [float(boxes[i][0]), float(refined_boxes[i][0])]
                xs = [float(boxes[i][1]), float(refined_boxes[i][1])]
                ax.add_line(lines.Line2D(xs, ys, color=color))
        if captions is not None:
            anchor = refined_boxes[i] if refined_boxes is not None else boxes[i]
            ty, tx = float(anchor[0]), float(anchor[1])
            ax.text(
                tx,
                ty,
                captions[i],
                size=11,
                verticalalignment="top",
                color="w",
                backgroundcolor="none",
                bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"},
            )
        if masks is not None:
            mask = np.asarray(masks[:, :, i]) > 0.5
            apply_mask(canvas, mask, color)
            for verts in _mask_contours(mask):
                ax.add_patch(patches.Polygon(verts, facecolor="none", edgecolor=color))
    ax.imshow(np.clip(canvas, 0, 255).astype(np.uint8))
    return _finish(fig, save_path, created)


############################################################
#  Tables
############################################################


def _ipython_html_display():
    """A function showing an HTML string through IPython when running in a Jupyter kernel, else None.

    Terminal IPython has no kernel and cannot render HTML, so it gets the plain-text table too.
    """
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return None
    if getattr(get_ipython(), "kernel", None) is None:
        return None
    return lambda html: display(HTML(html))


def display_table(table):
    """Show ``table`` (a list of rows, each a list of cells) and return what was rendered.

    In a Jupyter kernel (IPython with a kernel) the cells are inserted as-is (they may hold HTML markup)
    into an HTML table that is displayed, and the HTML string is returned. Otherwise (no IPython, a plain
    Python process, terminal IPython) a column-aligned plain-text table is printed and returned.
    """
    rows = [[str(cell) for cell in row] for row in table]
    show_html = _ipython_html_display()
    if show_html is not None:
        body = "".join("<tr>" + "".join(f"<td>{cell:40}</td>" for cell in row) + "</tr>" for row in rows)
        html = f"<table>{body}</table>"
        show_html(html)
        return html
    ncols = max((len(row) for row in rows), default=0)
    widths = [max((len(row[c]) for row in rows if c < len(row)), default=0) for c in range(ncols)]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    print(text)
    return text


def _is_conv2d(layer):
    """Whether ``layer`` is (a subclass of) a Conv2D layer, without importing Keras."""
    return any(cls.__name__ == "Conv2D" for cls in type(layer).__mro__)


def display_weight_stats(model):
    """Table of every weight of ``model.get_trainable_layers()``: name, shape, min, max, std.

    model: an ``mrcnn.model.MaskRCNN`` (or any object with ``get_trainable_layers()`` returning layers whose
    ``.weights`` are variables with ``.path`` or ``.name`` and ``.numpy()``). A weight whose values are all
    equal is flagged "*** dead?" (except a Conv2D bias, which is legitimately constant), one with
    |min| or |max| > 1000 "*** Overflow?" (red in HTML). Shown with ``display_table``; returns the rows
    (header first).
    """
    html = _ipython_html_display() is not None

    def flag(text):
        return f"<span style='color:red'>{text}</span>" if html else f" {text}"

    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    for layer in model.get_trainable_layers():
        for variable in layer.weights:
            values = np.asarray(variable.numpy())
            name = getattr(variable, "path", None) or variable.name
            low, high = values.min(), values.max()
            alert = ""
            is_conv_bias = _is_conv2d(layer) and variable.name.split("/")[-1].startswith("bias")
            if low == high and not is_conv_bias:
                alert += flag("*** dead?")
            if abs(low) > 1000 or abs(high) > 1000:
                alert += flag("*** Overflow?")
            table.append(
                [name + alert, str(values.shape), f"{low:+.4f}", f"{high:+.4f}", f"{values.std():+.4f}"]
            )
    display_table(table)
    return table
