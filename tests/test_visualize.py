"""Tests for mrcnn.visualize: headless figures, PNG output, pixel-exact helpers, tables."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from mrcnn import utils, visualize  # noqa: E402

CLASS_NAMES = ["BG", "cat", "dog"]
RED = (1.0, 0.0, 0.0)
BLUE = (0.0, 0.0, 1.0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def scene():
    """A 64x64 gray image with two square instances (cat, dog)."""
    image = np.full((64, 64, 3), 40, dtype=np.uint8)
    masks = np.zeros((64, 64, 2), dtype=bool)
    masks[10:30, 12:40, 0] = True
    masks[40:60, 40:60, 1] = True
    boxes = utils.extract_bboxes(masks)
    return image, boxes, masks, np.array([1, 2]), np.array([0.91234, 0.5])


def _png_size(path):
    path = Path(path)
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as png:
        assert png.format == "PNG"
        return png.size


def _rects(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


############################################################
#  Import behaviour
############################################################


def test_import_keeps_chosen_backend_sys_path_and_skips_ipython(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import matplotlib
        matplotlib.use("svg")
        before = list(sys.path)
        import mrcnn.visualize
        assert sys.path == before, "sys.path changed"
        assert "IPython" not in sys.modules, "IPython imported at module level"
        print(matplotlib.get_backend())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().lower() == "svg"


############################################################
#  Colours and pixel helpers
############################################################


def test_random_colors_values_and_seed():
    bright = visualize.random_colors(6, seed=3)
    dim = visualize.random_colors(6, bright=False, seed=3)
    assert len(bright) == 6 and len(set(bright)) == 6
    assert all(max(c) == pytest.approx(1.0) and min(c) >= 0 for c in bright)
    assert all(max(c) == pytest.approx(0.7) for c in dim)
    assert visualize.random_colors(6, seed=3) == bright
    # the same evenly spaced palette in every order
    assert sorted(visualize.random_colors(6)) == sorted(bright)
    assert (1.0, 0.0, 0.0) in bright  # hue 0


def test_apply_mask_blends_only_inside_mask():
    image = np.full((4, 5, 3), 100, dtype=np.uint8)
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1, 2] = 1
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.5), alpha=0.5)
    assert out is image  # in place
    # 0.5 * 100 + 0.5 * 255 * c, rounded: 177.5 -> 178, 50, 113.75 -> 114
    np.testing.assert_array_equal(image[1, 2], [178, 50, 114])
    untouched = np.ones((4, 5), dtype=bool)
    untouched[1, 2] = False
    assert np.all(image[untouched] == 100)

    float_image = np.full((2, 2, 3), 100.0)
    visualize.apply_mask(float_image, np.eye(2, dtype=bool), (0.2, 1.0, 0.0), alpha=0.25)
    np.testing.assert_allclose(float_image[0, 0], [75 + 0.25 * 51, 75 + 0.25 * 255, 75])
    np.testing.assert_allclose(float_image[0, 1], [100, 100, 100])


def test_apply_mask_rejects_wrong_mask_shape():
    with pytest.raises(ValueError, match="mask shape"):
        visualize.apply_mask(np.zeros((4, 4, 3)), np.zeros((4, 5)), RED)


def test_draw_box_burns_two_pixel_outline_inside_box():
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    out = visualize.draw_box(image, (2, 3, 8, 9), (255, 0, 0))
    assert out is image
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:8, 3:9] = True
    expected[4:6, 5:7] = False  # interior left after a 2-px border
    np.testing.assert_array_equal(image[..., 0] == 255, expected)
    assert not image[..., 1:].any()


def test_draw_box_clips_to_image():
    image = np.zeros((6, 6, 3), dtype=np.uint8)
    visualize.draw_box(image, (-5, -5, 3, 3), (9, 9, 9))
    painted = image[..., 0] == 9
    assert painted[0:3, 1:3].all() and painted[1:3, 0:3].all()
    assert not painted[3:].any() and not painted[:, 3:].any()


def test_render_instances_colours_mask_outline_and_box_only():
    image = np.full((64, 64, 3), 40, dtype=np.uint8)
    masks = np.zeros((64, 64, 2), dtype=bool)
    masks[10:30, 12:40, 0] = True
    masks[45:50, 45:50, 1] = True  # second instance has an all-zero box: skipped
    boxes = np.array([[5, 5, 50, 50], [0, 0, 0, 0]])
    out = visualize.render_instances(
        image, boxes, masks, np.array([1, 2]), CLASS_NAMES, scores=[0.9, 0.8], colors=[RED, BLUE]
    )
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out[20, 25], [148, 20, 20])  # rint(0.5*40 + 0.5*255) = 148
    np.testing.assert_array_equal(out[10, 25], [255, 0, 0])  # mask outline
    np.testing.assert_array_equal(out[5, 25], [255, 0, 0])  # box border
    np.testing.assert_array_equal(out[8, 25], [40, 40, 40])  # between box border and mask
    np.testing.assert_array_equal(out[47, 47], [40, 40, 40])  # skipped instance
    np.testing.assert_array_equal(out[60, 60], [40, 40, 40])  # far away
    assert np.all(image == 40)  # input untouched


def test_render_instances_rejects_mismatched_lengths(scene):
    image, boxes, masks, class_ids, _ = scene
    with pytest.raises(ValueError, match="instance counts disagree"):
        visualize.render_instances(image, boxes, masks, class_ids[:1], CLASS_NAMES)


############################################################
#  Instance displays
############################################################


def test_display_instances_draws_boxes_captions_masks(scene):
    image, boxes, masks, class_ids, scores = scene
    out = visualize.display_instances(
        image, boxes, masks, class_ids, CLASS_NAMES, scores, title="t", figsize=(3, 3), colors=[RED, BLUE]
    )
    assert out is None  # as Matterport's: a notebook cell ending with the call shows the picture once
    ax = plt.gcf().axes[0]
    assert [t.get_text() for t in ax.texts] == ["cat 0.912", "dog 0.500"]
    rects = _rects(ax)
    assert len(rects) == 2 and all(r.get_linestyle() == "dashed" for r in rects)
    assert rects[0].get_x() == pytest.approx(11.5) and rects[0].get_width() == pytest.approx(28)
    assert sum(isinstance(p, Polygon) for p in ax.patches) >= 2
    shown = ax.images[0].get_array()
    np.testing.assert_array_equal(shown[20, 25], [147, 20, 20])  # truncated to uint8 for display
    np.testing.assert_array_equal(shown[5, 5], [40, 40, 40])
    assert ax.get_title() == "t"


def test_display_instances_options_and_ax(scene):
    image, boxes, masks, class_ids, _ = scene
    fig, ax = plt.subplots(figsize=(2, 2))
    out = visualize.display_instances(
        image,
        boxes,
        masks,
        class_ids,
        CLASS_NAMES,
        ax=ax,
        show_bbox=False,
        show_mask=False,
        captions=["a", "b"],
    )
    assert out is None and ax.figure is fig
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    assert not _rects(ax)
    assert np.all(ax.images[0].get_array() == 40)


def test_display_instances_saves_png(scene, tmp_path):
    image, boxes, masks, class_ids, scores = scene
    path = tmp_path / "inst.png"
    visualize.display_instances(
        image, boxes, masks, class_ids, CLASS_NAMES, scores, figsize=(3, 2), save_path=path
    )
    assert _png_size(path) == (300, 200)


def test_display_instances_no_instances(capsys):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    _, ax = plt.subplots(figsize=(2, 2))
    visualize.display_instances(
        image, np.zeros((0, 4)), np.zeros((32, 32, 0)), np.zeros(0, int), CLASS_NAMES, ax=ax
    )
    assert "*** No instances to display ***" in capsys.readouterr().out
    assert len(ax.images) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"class_ids": np.array([1])}, "instance counts disagree"),
        ({"scores": [0.5]}, "scores=1"),
        ({"masks": np.zeros((64, 64, 3))}, "masks .last dim.=3"),
        ({"masks": np.zeros((32, 32, 2))}, "must have shape"),
        ({"class_ids": np.array([1, 7])}, "class ids \\[7\\]"),
        ({"image": np.zeros((64, 64))}, "RGB"),
    ],
)
def test_display_instances_validates(scene, change, message):
    image, boxes, masks, class_ids, scores = scene
    args = {"image": image, "boxes": boxes, "masks": masks, "class_ids": class_ids, "scores": scores}
    args.update(change)
    with pytest.raises(ValueError, match=message):
        visualize.display_instances(class_names=CLASS_NAMES, figsize=(2, 2), **args)


def test_display_differences_captions_follow_score_order(scene):
    image = scene[0]
    gt_mask = np.zeros((64, 64, 1), dtype=bool)
    gt_mask[10:30, 10:30, 0] = True
    pred_mask = np.zeros((64, 64, 2), dtype=bool)
    pred_mask[10:30, 10:30, 0] = True  # exact match, lower score
    pred_mask[40:60, 40:60, 1] = True  # wrong place, higher score
    fig, ax = plt.subplots(figsize=(2, 2))
    out = visualize.display_differences(
        image,
        utils.extract_bboxes(gt_mask),
        np.array([1]),
        gt_mask,
        utils.extract_bboxes(pred_mask),
        np.array([1, 2]),
        np.array([0.6, 0.9]),
        pred_mask,
        CLASS_NAMES,
        ax=ax,
    )
    assert out is fig
    assert [t.get_text() for t in ax.texts] == ["", "0.90 / 0.00", "0.60 / 1.00"]
    edges = [tuple(r.get_edgecolor()[:3]) for r in _rects(ax)]
    assert edges == [(0, 1, 0), (1, 0, 0), (1, 0, 0)]
    # the high-score prediction's box is the one at (40, 40)
    assert _rects(ax)[1].get_x() == pytest.approx(39.5)


def test_draw_rois_subset_masks_and_counts(scene, capsys, tmp_path):
    image = scene[0]
    rois = np.array([[4 * i, 4 * i, 4 * i + 10, 4 * i + 10] for i in range(12)])
    class_ids = np.array([1, 0] * 6)
    masks = np.ones((12, 7, 7), dtype=np.float32)
    fig = visualize.draw_rois(image, rois, rois + 1, masks, class_ids, CLASS_NAMES, limit=5, seed=0)
    ax = fig.axes[0]
    assert ax.get_title() == "Showing 5 random ROIs out of 12"
    out = capsys.readouterr().out
    assert "Positive ROIs:  6" in out and "Negative ROIs:  6" in out and "Positive Ratio: 0.50" in out
    dashed = [r for r in _rects(ax) if r.get_linestyle() == "dashed"]
    assert len(dashed) == 5
    gray = matplotlib.colors.to_rgb("gray")
    positives = [r for r in dashed if r.get_edgecolor()[:3] != pytest.approx(gray)]
    assert len(ax.lines) == len(positives) == len(ax.texts)
    same = visualize.draw_rois(image, rois, rois + 1, masks, class_ids, CLASS_NAMES, limit=5, seed=0)
    assert [r.get_x() for r in _rects(same.axes[0])] == [r.get_x() for r in _rects(ax)]
    # all 12 shown: positive RoI 0 has its (all-ones) mask pasted, nothing outside the RoIs changes
    path = tmp_path / "rois.png"
    fig = visualize.draw_rois(image, rois, rois, masks, class_ids, CLASS_NAMES, limit=20, save_path=path)
    shown = fig.axes[0].images[0].get_array()
    assert not np.array_equal(shown[2, 2], [40, 40, 40])
    np.testing.assert_array_equal(shown[0, 63], [40, 40, 40])
    assert fig.axes[0].get_title() == "12 ROIs"
    assert _png_size(path) == (1200, 1200)


def test_display_top_masks_ranks_classes_by_area(tmp_path):
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16, 3), dtype=bool)
    mask[:2, :2, 0] = True  # cat, area 4
    mask[4:12, 4:12, 1] = True  # dog, area 64
    mask[0:2, 8:10, 2] = True  # cat, area 4
    path = tmp_path / "top.png"
    fig = visualize.display_top_masks(image, mask, np.array([1, 2, 1]), CLASS_NAMES, limit=3, save_path=path)
    assert [ax.get_title() for ax in fig.axes] == ["H x W=16x16", "dog", "cat", "-"]
    cat_panel = fig.axes[2].images[0].get_array()
    assert cat_panel[0, 0] == 1 and cat_panel[0, 8] == 2 and cat_panel[8, 8] == 0
    assert not fig.axes[3].images[0].get_array().any()
    width, height = _png_size(path)
    assert (width, height) == (1400, 350)  # 14 x 14 * 1 row / 4 cols inches


def test_display_images_grid(tmp_path):
    images = [np.full((8, 8), i * 10.7) for i in range(5)]
    path = tmp_path / "grid.png"
    fig = visualize.display_images(images, titles=list("abcde"), cols=4, save_path=path)
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    assert fig.axes[1].images[0].get_array().dtype == np.uint8
    assert fig.axes[1].images[0].get_array()[0, 0] == 10
    assert _png_size(path) == (1400, 700)
    with pytest.raises(ValueError, match="titles"):
        visualize.display_images(images, titles=["x"])


############################################################
#  Metric plots
############################################################


def test_plot_precision_recall(tmp_path):
    precisions = np.array([1.0, 1.0, 0.5, 0.0])
    recalls = np.array([0.0, 0.5, 0.5, 1.0])
    path = tmp_path / "pr.png"
    fig = visualize.plot_precision_recall(0.5, precisions, recalls, save_path=path)
    ax = fig.axes[0]
    assert ax.get_title() == "Precision-Recall Curve. AP@50 = 0.500"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), recalls)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), precisions)
    assert _png_size(path) == (640, 480)


def test_plot_overlaps_labels(tmp_path):
    overlaps = np.array([[0.9, 0.1], [0.6, 0.2]])
    path = tmp_path / "ov.png"
    fig = visualize.plot_overlaps(
        np.array([1, 2, 0]), np.array([1, 2]), np.array([0.95, 0.5]), overlaps, CLASS_NAMES, save_path=path
    )
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.900\nmatch", "0.100\n", "0.600\nwrong", "0.200\n"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat (0.95)", "dog (0.50)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert _png_size(path) == (1200, 1000)
    with pytest.raises(ValueError, match="overlaps has shape"):
        visualize.plot_overlaps(np.array([1]), np.array([1, 2]), np.array([0.9, 0.8]), overlaps, CLASS_NAMES)


def test_draw_boxes_visibility_styles(scene, tmp_path):
    image, boxes, masks, _, _ = scene
    boxes = np.concatenate([boxes, [[2, 2, 8, 8]]])
    masks = np.concatenate([masks, np.zeros((64, 64, 1), bool)], axis=-1)
    path = tmp_path / "boxes.png"
    fig = visualize.draw_boxes(
        image,
        boxes=boxes,
        refined_boxes=boxes + 2,
        masks=masks,
        captions=["a", "b", "c"],
        visibilities=[0, 1, 2],
        title="boxes",
        save_path=path,
    )
    ax = fig.axes[0]
    rects = _rects(ax)
    # 3 boxes plus refined boxes for the 2 visible ones (caption boxes are text, not patches)
    assert len(rects) == 5
    assert rects[0].get_linestyle() == "dotted" and rects[0].get_edgecolor()[:3] == pytest.approx((0.5,) * 3)
    # drawn per box: box0 (gray dotted), box1 (dotted), refined1, box2 (solid), refined2
    assert [r.get_linestyle() for r in rects] == ["dotted", "dotted", "solid", "solid", "solid"]
    assert len(ax.lines) == 2
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    assert ax.texts[1].get_position() == pytest.approx((42.0, 42.0))  # refined corner, not (40, 40)
    assert _png_size(path) == (1200, 1200)

    fig2, ax2 = plt.subplots(figsize=(2, 2))
    assert visualize.draw_boxes(image, refined_boxes=boxes, ax=ax2) is fig2
    assert len(_rects(ax2)) == 3 and not ax2.lines
    with pytest.raises(ValueError, match="boxes or refined_boxes"):
        visualize.draw_boxes(image)
    with pytest.raises(ValueError, match="visibilities"):
        visualize.draw_boxes(image, boxes=boxes, visibilities=[1], ax=ax2)


def test_show_only_for_own_figure_on_interactive_backend(scene, monkeypatch, tmp_path):
    image, boxes, masks, class_ids, _ = scene
    calls = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    args = (image, boxes, masks, class_ids, CLASS_NAMES)
    visualize.display_instances(*args, figsize=(2, 2))
    assert calls == []  # Agg: non-interactive
    monkeypatch.setattr(plt, "get_backend", lambda: "TkAgg")
    visualize.display_instances(*args, figsize=(2, 2))
    assert calls == [1]
    visualize.display_instances(*args, figsize=(2, 2), save_path=tmp_path / "x.png")
    _, ax = plt.subplots(figsize=(2, 2))
    visualize.display_instances(*args, ax=ax)
    assert calls == [1]


############################################################
#  Tables
############################################################


def test_display_table_plain_text(capsys, monkeypatch):
    table = [["NAME", "SHAPE"], ["conv1/kernel", "(3, 3)"]]
    text = visualize.display_table(table)
    assert capsys.readouterr().out.strip() == text
    assert text.splitlines() == ["NAME          SHAPE", "conv1/kernel  (3, 3)"]
    monkeypatch.setitem(sys.modules, "IPython", None)  # IPython not installed
    assert visualize.display_table(table) == text


def test_display_table_plain_text_in_terminal_ipython(monkeypatch, capsys):
    ipython = pytest.importorskip("IPython")
    monkeypatch.setattr(ipython, "get_ipython", lambda: SimpleNamespace())  # a shell without a kernel
    assert visualize.display_table([["a", "b"]]) == "a  b"
    assert capsys.readouterr().out == "a  b\n"


def _fake_ipython_shell(monkeypatch):
    """Pretend to run in a Jupyter kernel; returns the list receiving displayed objects."""
    ipython = pytest.importorskip("IPython")
    import IPython.display

    shown = []
    monkeypatch.setattr(ipython, "get_ipython", lambda: SimpleNamespace(kernel=object()))
    monkeypatch.setattr(IPython.display, "display", shown.append)
    return shown


def test_display_table_html_under_ipython(monkeypatch):
    shown = _fake_ipython_shell(monkeypatch)
    html = visualize.display_table([["a", 1], ["<b>x</b>", 2.5]])
    assert html.startswith("<table><tr><td>a") and "<td><b>x</b>" in html and html.endswith("</tr></table>")
    assert len(shown) == 1 and shown[0].data == html


class _StandIn:
    """What display_weight_stats needs from MaskRCNN: get_trainable_layers()."""

    def __init__(self, layers):
        self.layers = layers

    def get_trainable_layers(self):
        return self.layers


@pytest.fixture(scope="module")
def keras_layers():
    keras = pytest.importorskip("keras")
    dense = keras.layers.Dense(3, name="fc")
    dense.build((None, 4))
    dense.set_weights([np.full((4, 3), 2000.0, np.float32), np.zeros(3, np.float32)])
    conv = keras.layers.Conv2D(2, 3, name="conv")
    conv.build((None, 8, 8, 1))
    kernel = np.linspace(-1, 1, 18, dtype=np.float32).reshape(3, 3, 1, 2)
    conv.set_weights([kernel, np.zeros(2, np.float32)])
    return [dense, conv]


def test_display_weight_stats_plain(keras_layers, capsys):
    table = visualize.display_weight_stats(_StandIn(keras_layers))
    assert table[0] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]
    assert table[1] == ["fc/kernel *** dead? *** Overflow?", "(4, 3)", "+2000.0000", "+2000.0000", "+0.0000"]
    assert table[2][0] == "fc/bias *** dead?"  # a constant non-conv weight is flagged
    assert table[3][:4] == ["conv/kernel", "(3, 3, 1, 2)", "-1.0000", "+1.0000"]
    assert table[4][0] == "conv/bias"  # conv biases may legitimately be constant
    assert len(table) == 5
    out = capsys.readouterr().out
    assert "WEIGHT NAME" in out and "fc/kernel *** dead? *** Overflow?" in out


def test_display_weight_stats_html(keras_layers, monkeypatch):
    shown = _fake_ipython_shell(monkeypatch)
    table = visualize.display_weight_stats(_StandIn(keras_layers))
    assert table[2][0] == "fc/bias<span style='color:red'>*** dead?</span>"
    assert "<span style='color:red'>*** Overflow?</span>" in shown[0].data
