"""Matplotlib figures of images and instances: ``display_images``, ``display_instances``,
``display_differences``, ``draw_rois``, ``display_top_masks`` and ``draw_boxes``, with the figure helpers
(``_finish``: save or show) the inspection plots share."""

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import lines, patches
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from skimage.measure import find_contours

from mrcnn.metrics import compute_matches, trim_zeros
from mrcnn.transform import unmold_mask
from mrcnn.visualize.drawing import Color, _check_image, _check_instances, apply_mask, random_colors

PathLike = str | os.PathLike

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


############################################################
#  Instance displays
############################################################


def display_images(
    images: Sequence[ArrayLike],
    titles: Sequence[str] | None = None,
    cols: int = 4,
    cmap=None,
    norm=None,
    interpolation: str | None = None,
    *,
    save_path: PathLike | None = None,
) -> Figure:
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
    image: ArrayLike,
    boxes: ArrayLike,
    masks: ArrayLike,
    class_ids: ArrayLike,
    class_names: Sequence[str],
    scores: ArrayLike | None = None,
    title: str = "",
    figsize: tuple[float, float] = (16, 16),
    ax: Axes | None = None,
    show_mask: bool = True,
    show_bbox: bool = True,
    colors: Sequence[Color] | None = None,
    captions: Sequence[str] | None = None,
    *,
    save_path: PathLike | None = None,
) -> None:
    """Draw detections on an image: dashed boxes, captions, translucent masks and mask outlines.

    image: [H, W, 3]; boxes: [N, 4] pixel boxes (y1, x1, y2, x2), exclusive y2/x2; masks: [H, W, N];
    class_ids: [N] ints indexing ``class_names``; scores: optional [N]; colors: optional N RGB(A) tuples
    (default ``random_colors(N)``); captions: optional N strings replacing "name score" (score to 3 dp).
    Instances with an all-zero box are skipped. With N = 0 a notice is printed and the bare image drawn.
    Draws into ``ax`` when given (never shown then). Returns None, as Matterport's: a notebook cell ending
    with this call shows the picture once (a returned Figure would be displayed a second time). To keep
    the figure, pass your own ``ax`` (``fig, ax = plt.subplots()``) or ``save_path``.
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
    _finish(fig, save_path, created)


def display_differences(
    image: ArrayLike,
    gt_box: ArrayLike,
    gt_class_id: ArrayLike,
    gt_mask: ArrayLike,
    pred_box: ArrayLike,
    pred_class_id: ArrayLike,
    pred_score: ArrayLike,
    pred_mask: ArrayLike,
    class_names: Sequence[str],
    title: str = "",
    ax: Axes | None = None,
    show_mask: bool = True,
    show_box: bool = True,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    *,
    save_path: PathLike | None = None,
) -> Figure:
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
    fig, ax, created = _axes(ax, (16, 16))
    display_instances(
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
    )
    return _finish(fig, save_path, created)


def draw_rois(
    image: ArrayLike,
    rois: ArrayLike,
    refined_rois: ArrayLike,
    mask: ArrayLike,
    class_ids: ArrayLike,
    class_names: Sequence[str],
    limit: int = 10,
    *,
    seed: int | None = None,
    save_path: PathLike | None = None,
) -> Figure:
    """Show up to ``limit`` randomly chosen RoIs (dashed; gray for background) and, for positive ones,
    their refined box (solid), a line between the two top-left corners, the class name and the mask.

    image: [H, W, 3]; rois, refined_rois: [N, 4] pixel boxes; mask: [N, h, w] per-RoI masks in the RoI's
    frame (pasted with ``transform.unmold_mask``); class_ids: [N] (0 = background). Prints the positive and
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
            apply_mask(canvas, unmold_mask(mask[i], rois[i], image.shape), color)
    ax.imshow(np.clip(canvas, 0, 255).astype(np.uint8))

    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    print(f"Positive Ratio: {positives / max(n, 1):.2f}")
    return _finish(fig, save_path, created=True)


def display_top_masks(
    image: ArrayLike,
    mask: ArrayLike,
    class_ids: ArrayLike,
    class_names: Sequence[str],
    limit: int = 4,
    *,
    save_path: PathLike | None = None,
) -> Figure:
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


def draw_boxes(
    image: ArrayLike,
    boxes: ArrayLike | None = None,
    refined_boxes: ArrayLike | None = None,
    masks: ArrayLike | None = None,
    captions: Sequence[str] | None = None,
    visibilities: Sequence[int] | None = None,
    title: str = "",
    ax: Axes | None = None,
    *,
    save_path: PathLike | None = None,
) -> Figure:
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
