"""Inspection plots and tables: ``plot_precision_recall``, ``plot_overlaps``, ``display_table``,
``display_weight_stats``."""

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from mrcnn.visualize.figures import PathLike, _finish

############################################################
#  Metrics plots
############################################################


def plot_precision_recall(
    AP: float, precisions: ArrayLike, recalls: ArrayLike, *, save_path: PathLike | None = None
) -> Figure:
    """Precision-recall curve titled with the AP (as from ``metrics.compute_ap``). Returns the Figure."""
    fig, ax = plt.subplots(1)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {float(AP):.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)
    return _finish(fig, save_path, created=True)


def plot_overlaps(
    gt_class_ids: ArrayLike,
    pred_class_ids: ArrayLike,
    pred_scores: ArrayLike,
    overlaps: ArrayLike,
    class_names: Sequence[str],
    threshold: float = 0.5,
    *,
    save_path: PathLike | None = None,
) -> Figure:
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


def display_table(table: Sequence[Sequence]) -> str:
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


def display_weight_stats(model) -> list[list[str]]:
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
