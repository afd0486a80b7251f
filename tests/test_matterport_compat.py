"""Matterport's own files against mrcnn: one test per cause found running them unchanged (issue 22).

Each test reproduces the call pattern of Matterport's samples and notebooks (written here, not copied):
imgaug imported before mrcnn on NumPy 2, imgaug augmenters in ``train()``, ``mrcnn.parallel_model``,
``utils.mold_mask`` and ``visualize.ROOT_DIR``, what a notebook cell shows for ``load_weights`` and
``display_instances``, ``compute_ap``'s type, and a ``load_mask`` that raises on border polygons.
"""

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
import skimage.draw
from tiny_configs import TinyShapesTrainConfig

import _mrcnn_imgaug_compat
import mrcnn.model as modellib
from mrcnn import data, utils, visualize
from mrcnn.datasets.shapes import ShapesDataset

REPO = Path(__file__).resolve().parent.parent
needs_imgaug = pytest.mark.skipif(importlib.util.find_spec("imgaug") is None, reason="pip install imgaug")


def _python(code, cwd, env=None, site_dir=None):
    """Run ``code`` in a fresh interpreter (repo importable); ``site_dir`` is processed as a site
    directory (its .pth files run), as site-packages is at start-up."""
    prefix = f"import site; site.addsitedir({str(site_dir)!r}); " if site_dir else ""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("MRCNN_IMGAUG_COMPAT", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", prefix + code], cwd=cwd, env=environment, capture_output=True, text=True
    )


############################################################
#  imgaug 0.4.0 on NumPy 2
############################################################

# Matterport's coco.py / nucleus.py / demo.ipynb order: numpy and imgaug first, mrcnn afterwards.
MATTERPORT_IMPORTS = (
    "import numpy as np; import imgaug; from imgaug import augmenters as iaa; "
    "import mrcnn.model as modellib; from mrcnn import utils; "
    "print(type(iaa.Sequential([iaa.Fliplr(0.5)])).__name__, type(np.sctypes).__name__)"
)


@needs_imgaug
def test_imgaug_imports_before_mrcnn_through_the_installed_pth(tmp_path):
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    shutil.copy(REPO / _mrcnn_imgaug_compat.PTH_NAME, site_dir)  # the file a regular install ships
    ran = _python(MATTERPORT_IMPORTS, tmp_path, site_dir=site_dir)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["Sequential", "dict"]
    if int(np.__version__.split(".")[0]) >= 2:  # the failure the hook prevents, and its off switch
        off = _python(MATTERPORT_IMPORTS, tmp_path, env={"MRCNN_IMGAUG_COMPAT": "0"}, site_dir=site_dir)
        assert off.returncode != 0 and "np.sctypes" in off.stderr
        plain = _python("import numpy; import imgaug, sys; print('imgaug' in sys.modules)", tmp_path)
        assert plain.returncode != 0  # without the .pth: NumPy 2 breaks imgaug 0.4.0


@needs_imgaug
def test_the_hook_restores_numpy_1_sctypes_only_on_imgaug_import(tmp_path):
    code = "\n".join(
        [
            "import sys, numpy, _mrcnn_imgaug_compat as c",
            "c.install(); c.install()",
            "hooks = sum(isinstance(f, c._ImgaugImportHook) for f in sys.meta_path)",
            "before = 'sctypes' in vars(numpy)",
            "import imgaug",
            "print(hooks, before, sorted(numpy.sctypes), [t.__name__ for t in numpy.sctypes['float']][:3])",
        ]
    )
    ran = _python(code, tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    if int(np.__version__.split(".")[0]) >= 2:  # installed once; nothing changed before imgaug's import
        assert ran.stdout.strip() == (
            "1 False ['complex', 'float', 'int', 'others', 'uint'] ['float16', 'float32', 'float64']"
        )


def test_wheels_carry_the_pth_and_editable_installs_can_write_it(tmp_path):
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    shipped = tmp_path / "lib" / _mrcnn_imgaug_compat.PTH_NAME
    assert shipped.read_text() == _mrcnn_imgaug_compat.PTH_LINE
    assert (tmp_path / "lib" / "_mrcnn_imgaug_compat.py").exists()
    written = _mrcnn_imgaug_compat.write_pth(str(tmp_path))
    assert Path(written).read_text() == (REPO / _mrcnn_imgaug_compat.PTH_NAME).read_text()


############################################################
#  imgaug augmenters in train()
############################################################


def _shapes(count, seed):
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="module")
def iaa():
    _mrcnn_imgaug_compat.install()  # as the installed .pth does at start-up
    return pytest.importorskip("imgaug.augmenters")


def test_imgaug_augmenters_move_masks_with_the_image(iaa):
    """As Matterport's load_image_gt: geometric augmenters move image and masks, colour ones only the
    image (through imgaug's to_deterministic / augment_image with a HooksImages activator)."""
    dataset, config = _shapes(1, 3), TinyShapesTrainConfig()
    image, _, _, boxes, masks = data.load_image_gt(dataset, config, 0)
    flipped, _, _, flipped_boxes, flipped_masks = data.load_image_gt(
        dataset, config, 0, augmentation=iaa.Sequential([iaa.Fliplr(1.0), iaa.Multiply((1.4, 1.4))])
    )
    np.testing.assert_array_equal(flipped_masks, masks[:, ::-1])
    np.testing.assert_array_equal(flipped_boxes[:, [1, 3]], 64 - boxes[:, [3, 1]])
    assert not np.array_equal(flipped, image[:, ::-1])  # Multiply changed the pixels, not the masks


def test_train_with_matterport_style_imgaug_augmentation(iaa, tmp_path):
    """nucleus.py's augmentation (SomeOf, flips, OneOf quarter turns, Multiply, GaussianBlur) in train()."""
    augmentation = iaa.SomeOf(
        (0, 2),
        [
            iaa.Fliplr(0.5),
            iaa.Flipud(0.5),
            iaa.OneOf([iaa.Affine(rotate=90), iaa.Affine(rotate=180), iaa.Affine(rotate=270)]),
            iaa.Multiply((0.8, 1.5)),
            iaa.GaussianBlur(sigma=(0.0, 5.0)),
        ],
    )
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("training", TinyShapesTrainConfig(), str(tmp_path))
    model.train(
        _shapes(6, 0), _shapes(2, 1), 0.01, 1, "heads", augmentation=augmentation, workers=1, verbose=0
    )
    assert model.epoch == 1 and len(os.listdir(model.log_dir)) > 0
    # Every augmenter of that list keeps masks consistent with the image on a real sample.
    dataset = _shapes(4, 2)
    for image_id in dataset.image_ids:
        image, _, class_ids, boxes, masks = data.load_image_gt(
            dataset, TinyShapesTrainConfig(), image_id, augmentation=augmentation
        )
        np.testing.assert_array_equal(boxes, utils.extract_bboxes(masks))
        assert image.dtype == np.uint8 and masks.shape[-1] == len(class_ids)


############################################################
#  Missing names
############################################################


def test_parallel_model_imports_and_says_what_to_do():
    from mrcnn.parallel_model import ParallelModel

    with pytest.raises(RuntimeError, match=r"Set GPU_COUNT = 2 in your Config.*strategy="):
        ParallelModel(keras.Sequential(), 2)


def test_mold_mask_and_visualize_root_dir_as_matterports(tmp_path):
    assert utils.mold_mask(np.ones((8, 8, 1), bool), TinyShapesTrainConfig()) is None  # Matterport's stub
    cwd = tmp_path / "samples"
    cwd.mkdir()
    ran = _python("from mrcnn import visualize; print(visualize.ROOT_DIR)", cwd)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == str(tmp_path)  # the parent of the working directory, as Matterport's
    assert str(tmp_path) not in sys.path


############################################################
#  Notebook behaviour
############################################################


def test_notebook_cells_ending_with_load_weights_or_display_instances_stay_short(tmp_path):
    IPython = pytest.importorskip("IPython")
    formatter = IPython.core.formatters.DisplayFormatter()
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("inference", TinyShapesTrainConfig(), str(tmp_path))
    path = tmp_path / "weights.h5"
    model.save_weights(str(path))
    report = model.load_weights(str(path), by_name=True)
    shown = formatter.format(report)[0]["text/plain"]
    assert "\n" not in shown and shown.startswith("<WeightsReport: ") and len(shown) < 200
    assert report["missing"] == [] and report["tensors"] > 0  # still the dict our callers read
    image = np.zeros((32, 32, 3), np.uint8)
    masks = np.zeros((32, 32, 1), bool)
    masks[4:10, 4:10] = True
    result = visualize.display_instances(image, np.array([[4, 4, 10, 10]]), masks, np.array([1]), ["BG", "a"])
    assert result is None  # the cell's value displays nothing: the figure is shown once
    plt.close("all")


def test_compute_ap_returns_numpy_float64():
    gt_boxes = np.array([[0, 0, 10, 10]])
    masks = np.zeros((16, 16, 1), bool)
    masks[:10, :10] = True
    ap, precisions, recalls, overlaps = utils.compute_ap(
        gt_boxes, np.array([1]), masks, gt_boxes, np.array([1]), np.array([0.9]), masks
    )
    assert type(ap) is np.float64 and ap == 1.0
    mean_ap = utils.compute_ap_range(
        gt_boxes, np.array([1]), masks, gt_boxes, np.array([1]), np.array([0.9]), masks, verbose=0
    )
    assert type(mean_ap) is np.float64


############################################################
#  A load_mask that raises (balloon.py on border polygons)
############################################################


class BorderPolygonDataset(ShapesDataset):
    """Polygons drawn as balloon.py draws them, with skimage.draw.polygon and no ``shape``: a vertex on
    the right border (x == width) gives an out-of-range index and an IndexError in odd images."""

    def load_mask(self, image_id):
        mask = np.zeros((64, 64, 1), np.uint8)
        right = 64 if image_id % 2 else 40
        rr, cc = skimage.draw.polygon([10, 10, 50, 50], [20, right, right, 20])
        mask[rr, cc, 0] = 1
        return mask.astype(bool), np.ones([1], np.int32)


def test_load_mask_errors_are_counted_once_per_epoch(caplog):
    dataset = BorderPolygonDataset()
    dataset.load_shapes(8, 64, 64, seed=0)
    dataset.prepare()
    sequence = data.MaskRCNNSequence(dataset, TinyShapesTrainConfig(), shuffle=False, seed=0, steps=2)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        for i in range(len(sequence)):
            sequence[i]
        sequence.on_epoch_end()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("Error loading image 1: IndexError")
    assert lines[1].startswith("Skipped 2 images this epoch because loading raised (the epoch used 4 images)")
    assert "first error: image 1: IndexError" in lines[1]
