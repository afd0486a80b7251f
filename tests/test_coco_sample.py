"""samples/coco/coco.py on fruits_nuts arranged as a COCO 2017 tree: loader, masks, results, download, CLI."""

import http.server
import json
import os
import shutil
import threading
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.evaluate import coco_metrics
from samples import sample_utils
from samples.coco import coco as coco_sample
from tests.shared_paths import DATA_DIR

FRUITS = DATA_DIR / "fruits_nuts" / "data"
TRAIN_IMAGES = (0, 1, 2)
CROWD_RLE = {"size": [600, 800], "counts": [480000 - 400, 400]}  # column-major: the last 400 pixels


def subset_json(image_ids, extra_annotations=()):
    data = json.loads((FRUITS / "trainval.json").read_text())
    keep = set(image_ids)
    return {
        "images": [i for i in data["images"] if i["id"] in keep],
        "categories": data["categories"],
        "annotations": [a for a in data["annotations"] if a["image_id"] in keep] + list(extra_annotations),
    }


def file_names(image_ids):
    """The JSON's file names of these image ids (id 2 is "10.jpg": names are not ids)."""
    data = json.loads((FRUITS / "trainval.json").read_text())
    return [i["file_name"] for i in data["images"] if i["id"] in set(image_ids)]


def write_layout(root, train_ids=TRAIN_IMAGES, val_ids=None):
    """dataset_dir/annotations/instances_{train,val}2017.json and {train,val}2017/ image folders."""
    data = json.loads((FRUITS / "trainval.json").read_text())
    val_ids = [i["id"] for i in data["images"]] if val_ids is None else val_ids
    crowd = {
        "id": 10_000,
        "image_id": val_ids[0],
        "category_id": 3,
        "iscrowd": 1,
        "segmentation": CROWD_RLE,
        "area": 400.0,
        "bbox": [799.0, 100.0, 1.0, 400.0],
    }
    (root / "annotations").mkdir(parents=True)
    for subset, ids, extra in (("train", train_ids, ()), ("val", val_ids, (crowd,))):
        annotations = root / "annotations" / f"instances_{subset}2017.json"
        annotations.write_text(json.dumps(subset_json(ids, extra)))
        (root / f"{subset}2017").mkdir()
        for name in file_names(ids):
            os.symlink(FRUITS / "images" / name, root / f"{subset}2017" / name)
    return root


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    return write_layout(tmp_path_factory.mktemp("coco"))


def test_load_coco_and_masks(coco_dir):
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(str(coco_dir), "val", year="2017", return_coco=True)
    dataset.prepare()
    assert isinstance(coco, COCO) and dataset.num_images == 18
    assert dataset.class_names == ["BG", "date", "fig", "hazelnut"]
    assert [os.path.basename(info["path"]) for info in dataset.image_info] == file_names(range(18))
    assert dataset.load_image(2).shape == (600, 800, 3)
    assert dataset.image_reference(5) == f"https://cocodataset.org/#explore?id={dataset.image_info[5]['id']}"
    assert sum(len(info["annotations"]) for info in dataset.image_info) == 165 + 1
    first = dataset.image_info[0]
    masks, class_ids = dataset.load_mask(0)
    assert masks.dtype == bool and masks.shape == (600, 800, len(first["annotations"]))
    # The crowd annotation of the first image comes last with a negative id (hazelnut = internal 3).
    assert class_ids[-1] == -3 and masks[..., -1].sum() == 400 and masks[200:600, 799, -1].all()
    sources = [dataset.map_source_class_id(f"coco.{a['category_id']}") for a in first["annotations"][:-1]]
    assert class_ids[:-1].tolist() == sources
    np.testing.assert_array_equal(masks[..., 0], coco.annToMask(first["annotations"][0]).astype(bool))
    # Compressed RLE (str counts) goes through annToRLE/annToMask unchanged.
    rle = mask_utils.encode(np.asfortranarray(masks[..., :1].astype(np.uint8)))[0]
    compressed = {"segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}
    np.testing.assert_array_equal(dataset.annToMask(compressed, 600, 800).astype(bool), masks[..., 0])

    figs = coco_sample.CocoDataset()
    figs.load_coco(str(coco_dir), "train", year="2017", class_ids=[2])
    figs.prepare()
    assert figs.class_names == ["BG", "fig"]
    assert all(a["category_id"] == 2 for info in figs.image_info for a in info["annotations"])
    with pytest.raises(FileNotFoundError, match="auto_download=True"):
        coco_sample.CocoDataset().load_coco(str(coco_dir), "minival", year="2014")


def test_ground_truth_through_build_coco_results_scores_one(coco_dir):
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(str(coco_dir), "val", year="2017", return_coco=True)
    dataset.prepare()
    results = []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        keep = class_ids > 0
        masks, class_ids = masks[..., keep], class_ids[keep]
        boxes = coco_sample.utils.extract_bboxes(masks)
        results += coco_sample.build_coco_results(
            dataset, [dataset.image_info[image_id]["id"]], boxes, class_ids, np.ones(len(class_ids)), masks
        )
    assert len(results) == 165 and {r["category_id"] for r in results} == {1, 2, 3}
    for iou_type in ("segm", "bbox"):
        metrics = coco_metrics(coco, results, iou_type)
        assert metrics["AP"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
        assert metrics["per_class_ap"] == {
            "date": pytest.approx(1.0),
            "fig": pytest.approx(1.0),
            "hazelnut": pytest.approx(1.0),
        }
    assert coco_sample.build_coco_results(dataset, [0], None, None, None, None) == []


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in members.items():
            archive.write(source, name) if isinstance(source, os.PathLike) else archive.writestr(name, source)


@pytest.fixture()
def coco_server(tmp_path):
    """A local HTTP server with cocodataset.org's zips for train2017: serves files under tmp/www."""
    www = tmp_path / "www"
    (www / "zips").mkdir(parents=True)
    (www / "annotations").mkdir()
    make_zip(
        www / "zips" / "train2017.zip",
        {f"train2017/{name}": FRUITS / "images" / name for name in file_names(TRAIN_IMAGES)},
    )
    make_zip(
        www / "annotations" / "annotations_trainval2017.zip",
        {
            f"annotations/instances_{s}2017.json": json.dumps(subset_json(TRAIN_IMAGES))
            for s in ("train", "val")
        },
    )
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, format, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_auto_download_from_local_server(coco_server, tmp_path, capsys):
    url, requests = coco_server

    class LocalCoco(coco_sample.CocoDataset):
        DOWNLOAD_URL = url
        ALLOW_HTTP = True

    root = tmp_path / "downloaded"
    dataset = LocalCoco()
    dataset.load_coco(str(root), "train", year="2017", auto_download=True)
    dataset.prepare()
    assert dataset.num_images == 3 and all(dataset.load_image(i).shape == (600, 800, 3) for i in range(3))
    assert sorted(requests) == ["/annotations/annotations_trainval2017.zip", "/zips/train2017.zip"]
    # Zips deleted, no staging or partial files left; both annotation files of the zip are in place.
    assert sorted(os.listdir(root)) == ["annotations", "train2017"]
    assert sorted(os.listdir(root / "annotations")) == ["instances_train2017.json", "instances_val2017.json"]
    assert "Downloading" in capsys.readouterr().out
    LocalCoco().load_coco(str(root), "train", year="2017", auto_download=True)
    assert len(requests) == 2, "present files must not be downloaded again"
    # Plain HTTP is refused unless the class allows it.
    shutil.rmtree(root / "train2017")

    class StrictCoco(LocalCoco):
        ALLOW_HTTP = False

    with pytest.raises(ValueError, match="plain HTTP"):
        StrictCoco().load_coco(str(root), "train", year="2017", auto_download=True)
    assert sorted(os.listdir(root)) == ["annotations"]


def test_download_plan_for_minival():
    plan = coco_sample.CocoDataset().download_plan("/d", "minival", "2014")
    assert [p[0] for p in plan] == [
        "https://images.cocodataset.org/zips/val2014.zip",
        coco_sample.CocoDataset.MINIVAL_URLS["minival"],
    ]
    assert [p[3] for p in plan] == ["/d/val2014", "/d/annotations/instances_minival2014.json"]
    assert plan[1][2] == "/d/annotations"
    with pytest.raises(ValueError, match="only for 2014"):
        coco_sample.CocoDataset().auto_download("/d", "minival", "2017")


TINY = [
    "--config",
    "NUM_CLASSES=4",
    "--config",
    "BACKBONE=mrcnn.datasets.shapes:small_backbone",
    "--config",
    "COMPUTE_BACKBONE_SHAPE=mrcnn.datasets.shapes:small_backbone_shapes",
    "--config",
    "IMAGE_MIN_DIM=64",
    "--config",
    "IMAGE_MAX_DIM=64",
    "--config",
    "TOP_DOWN_PYRAMID_SIZE=32",
    "--config",
    "FPN_CLASSIF_FC_LAYERS_SIZE=32",
    "--config",
    "FPN_MASK_CONV_LAYERS_SIZE=16",
    "--config",
    "TRAIN_ROIS_PER_IMAGE=8",
    "--config",
    "POST_NMS_ROIS_TRAINING=32",
    "--config",
    "POST_NMS_ROIS_INFERENCE=32",
    "--config",
    "STEPS_PER_EPOCH=1",
    "--config",
    "VALIDATION_STEPS=1",
    "--config",
    "IMAGES_PER_GPU=1",
]


def test_command_line_train_then_evaluate(coco_dir, tmp_path, capsys):
    logs = tmp_path / "logs"
    common = ["--dataset", str(coco_dir), "--year", "2017", "--logs", str(logs)] + TINY
    assert coco_sample.main(["train", "--model", "none", "--epochs", "1,1,1"] + common) == 0
    out = capsys.readouterr().out
    assert "Training stage 1: heads to epoch 1" in out and "IMAGE_MAX_DIM                  64" in out
    run_dirs = [d for d in os.listdir(logs) if d.startswith("coco")]
    assert len(run_dirs) == 1 and os.listdir(logs / run_dirs[0]).count("mask_rcnn_coco_0001.h5") == 1

    assert coco_sample.main(["evaluate", "--model", "last", "--limit", "2"] + common) == 0
    out = capsys.readouterr().out
    assert "Running COCO evaluation on 2 images." in out and "Loading weights " in out
    assert out.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]") == 1
    assert "Prediction time:" in out and "Total time:" in out


def test_command_line_errors(capsys):
    assert coco_sample.main(["fly", "--dataset", "d", "--model", "none"]) == 2
    assert "'fly' is not recognized" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        coco_sample.main(["train", "--dataset", "d", "--model", "none", "--download", "maybe"])
    assert "expected True or False" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        coco_sample.main(["train", "--dataset", "d", "--model", "none", "--config", "image_max_dim=64"])
    assert "Unknown configuration attribute 'image_max_dim'" in capsys.readouterr().err
    config = sample_utils.make_config(
        coco_sample.CocoConfig,
        ["MEAN_PIXEL=[1, 2, 3]", "BACKBONE=resnet50", "RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]"],
    )
    assert config.MEAN_PIXEL.dtype == coco_sample.CocoConfig.MEAN_PIXEL.dtype
    assert config.BACKBONE == "resnet50" and config.MEAN_PIXEL.tolist() == [1, 2, 3]
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128) and config.NAME == "coco"
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        coco_sample.weights_path(None, "/nonexistent/weights.h5")
