"""The ``mrcnn`` command: help, exit codes, config loading, inspect-weights and detect end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tiny_configs import Shapes64Config
from weights_fixture import write_layout_file

from mrcnn import cli
from mrcnn.cli import main
from mrcnn.datasets.shapes import ShapesFastConfig, make_dataset
from mrcnn.weights import backbone_label

COMMANDS = ("demo", "train", "detect", "evaluate", "export", "inspect-weights")


class TinyConfig(Shapes64Config):
    """Shapes model at 64 px with few RoIs; DETECTION_MIN_CONFIDENCE 0 so random weights still detect."""

    NAME = "tiny"
    POST_NMS_ROIS_INFERENCE = 50
    DETECTION_MAX_INSTANCES = 5
    DETECTION_MIN_CONFIDENCE = 0.0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """(weights .h5, config .json with CLASS_NAMES) of a randomly initialized TinyConfig model."""
    import keras

    from mrcnn import model as modellib

    root = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(1)
    model = modellib.MaskRCNN(mode="inference", config=TinyConfig(), model_dir=str(root))
    weights = root / "tiny.h5"
    model.save_weights(str(weights))
    config = TinyConfig().to_dict()
    config["CLASS_NAMES"] = ["BG", "square", "circle", "triangle"]
    config_path = root / "tiny.json"
    config_path.write_text(json.dumps(config))
    return weights, config_path


@pytest.fixture(scope="module")
def coco_layout_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout") / "coco_layout.h5"
    write_layout_file(str(path), num_classes=81)
    return path


def test_help_of_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)
    for command in COMMANDS:
        assert main([command, "--help"]) == 0
        assert f"usage: mrcnn {command}" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["fly"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["detect", "image.png", "--out", "x"]) == 2  # --weights missing
    assert "--weights" in capsys.readouterr().err
    assert main(["train", "--dataset", "d", "--epochs", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["detect", "a.png", "--weights", "w.h5", "--out", "o", "--min-confidence", "1.5"]) == 2


def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path, capsys, tiny_model):
    weights, config = tiny_model
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not weights")
    cases = [
        (
            [
                "detect",
                str(tmp_path / "missing.png"),
                "--weights",
                str(weights),
                "--out",
                str(tmp_path / "o"),
            ],
            "image or folder not found",
        ),
        (["detect", str(tmp_path), "--weights", str(weights), "--out", str(tmp_path / "o")], "has no images"),
        (["inspect-weights", str(tmp_path / "missing.h5")], "weights file not found"),
        (["inspect-weights", str(not_hdf5)], "not an HDF5 weights file"),
        (
            [
                "detect",
                str(weights),
                "--weights",
                str(weights),
                "--config",
                "lobster",
                "--out",
                str(tmp_path),
            ],
            "neither a JSON file nor a sample config name",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("mrcnn: error: ") and message in err, err
        assert "Traceback" not in err


def test_weights_that_do_not_fit_the_config_name_the_config_to_pass(tmp_path, capsys, tiny_model):
    weights, _ = tiny_model
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    # No --config: the COCO config (ResNet-101, 81 classes) does not fit a 4-class small-backbone file.
    assert main(["detect", str(tmp_path / "a.png"), "--weights", str(weights), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "NUM_CLASSES=4 (config: 81)" in err and "BACKBONE=small_backbone (config: resnet101)" in err
    assert "--config shapes" in err


def test_load_config_samples_json_and_overrides(tmp_path):
    config, names = cli.load_config(None, inference=True)
    assert (config.NAME, config.NUM_CLASSES, config.BACKBONE) == ("coco", 81, "resnet101")
    assert config.BATCH_SIZE == 1
    assert len(names) == 81 and names[:2] == ["BG", "person"]
    config, names = cli.load_config("nucleus", inference=True)
    assert (config.BACKBONE, config.IMAGE_RESIZE_MODE, config.RPN_NMS_THRESHOLD) == ("resnet50", "pad64", 0.7)
    assert cli.load_config("nucleus")[0].IMAGE_RESIZE_MODE == "crop"
    config, names = cli.load_config("shapes", NUM_CLASSES=6)
    assert names == ["BG", "square", "circle", "triangle"]
    assert config.NUM_CLASSES == 6 and config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 6  # derived recomputed
    # A JSON written from a config with a callable backbone comes back with that function.
    values = ShapesFastConfig().to_dict()
    values.update(NAME="mine", CLASS_NAMES=["BG", "a", "b", "c"])
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(values))
    config, names = cli.load_config(str(path))
    assert config.NAME == "mine" and names == ["BG", "a", "b", "c"]
    assert backbone_label(config) == "small_backbone"
    for text, message in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"NUM_CLASES": 3}', "NUM_CLASES"),
        ('{"BACKBONE": "<callable os.system>"}', "only functions of the mrcnn package"),
    ]:
        path.write_text(text)
        with pytest.raises(cli.UserError, match=message):
            cli.load_config(str(path))


def test_parse_class_names(tmp_path):
    assert cli.parse_class_names("cat, dog", 3) == ["BG", "cat", "dog"]
    assert cli.parse_class_names("BG,cat,dog", 3) == ["BG", "cat", "dog"]
    names_file = tmp_path / "names.txt"
    names_file.write_text("cat\n\ndog\n")
    assert cli.parse_class_names(str(names_file), 3) == ["BG", "cat", "dog"]
    with pytest.raises(cli.UserError, match="gives 1 names but the config has NUM_CLASSES=3"):
        cli.parse_class_names("cat", 3)


def test_inspect_weights_of_a_coco_layout_file(capsys, coco_layout_weights):
    assert main(["inspect-weights", str(coco_layout_weights), "--layers"]) == 0
    out = capsys.readouterr().out
    # Totals of mask_rcnn_coco.h5's layout (coco_weights_layout.json).
    assert "233 layers with weights, 690 tensors, 64,158,584 parameters" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert lines["NUM_CLASSES"] == ["81"] and lines["BACKBONE"] == ["resnet101"]
    assert lines["FPN_CLASSIF_FC_LAYERS_SIZE"] == ["1024"] and lines["ANCHORS_PER_LOCATION"] == ["3"]
    assert "matches --config coco" in out
    assert any(
        line.split()[:2] == ["mrcnn_class_logits", "mrcnn_class_logits/kernel:0"] and "[1024, 81]" in line
        for line in out.splitlines()
    )


def test_describe_weights_of_a_tiny_model_and_other_class_counts(tmp_path, tiny_model):
    likely = cli.describe_weights(str(tiny_model[0]))["likely"]
    assert likely == {
        "NUM_CLASSES": 4,
        "BACKBONE": "small_backbone",
        "TOP_DOWN_PYRAMID_SIZE": 64,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 256,
        "POOL_SIZE": 7,
        "FPN_MASK_CONV_LAYERS_SIZE": 64,
        "ANCHORS_PER_LOCATION": 3,
        "sample": "shapes",
    }
    path = tmp_path / "five.h5"
    write_layout_file(str(path), num_classes=5, full_model=True)  # Keras 2 model.save layout
    likely = cli.describe_weights(str(path))["likely"]
    assert likely["NUM_CLASSES"] == 5 and likely["BACKBONE"] == "resnet101" and "sample" not in likely


def test_detect_folder_writes_overlays_and_coco_results(tmp_path, capsys, tiny_model):
    from pycocotools.coco import COCO

    weights, config = tiny_model
    images = tmp_path / "images"
    images.mkdir()
    dataset = make_dataset(2, seed=5, size=64)
    for image_id, name in zip(dataset.image_ids, ("first.png", "second.jpg")):
        Image.fromarray(dataset.load_image(image_id)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert (
        main(["detect", str(images), "--weights", str(weights), "--config", str(config), "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "[1/2]" in printed and "[2/2]" in printed
    assert sorted(os.listdir(out)) == ["first.png", "images.json", "results.json", "second.png"]
    for name in ("first.png", "second.png"):
        with Image.open(out / name) as png:
            assert png.width >= 640 and png.height >= 640  # 64 px images drawn enlarged
            pixels = np.asarray(png.convert("RGB"))
            assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 3  # more than a blank canvas
    results = json.loads((out / "results.json").read_text())
    assert results, "DETECTION_MIN_CONFIDENCE 0 keeps detections of the random model"
    assert {r["image_id"] for r in results} <= {1, 2} and {r["category_id"] for r in results} <= {1, 2, 3}
    gt = COCO(str(out / "images.json"))
    detections = gt.loadRes(str(out / "results.json"))
    assert len(detections.getAnnIds()) == len(results)
    assert [img["file_name"] for img in gt.dataset["images"]] == [
        str(images / "first.png"),
        str(images / "second.jpg"),
    ]
    assert [c["name"] for c in gt.dataset["categories"]] == ["square", "circle", "triangle"]
    for r in results:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and 0 <= r["score"] <= 1


def test_installed_entry_point_and_python_m(tmp_path, coco_layout_weights):
    result = subprocess.run(
        ["mrcnn", "inspect-weights", str(coco_layout_weights)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "matches --config coco" in result.stdout
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrcnn",
            "detect",
            str(tmp_path / "nothing.png"),
            "--weights",
            str(coco_layout_weights),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("mrcnn: error: image or folder not found")
    assert "Traceback" not in result.stderr


def _write_coco_dataset(folder, count, seed):
    """``count`` 64-px shapes images as PNGs plus a COCO instances JSON; returns the JSON path."""
    from mrcnn.evaluate import dataset_to_coco

    folder.mkdir()
    dataset = make_dataset(count, seed=seed, size=64)
    coco = dataset_to_coco(dataset).dataset
    for image in coco["images"]:
        image["file_name"] = f"shape{image['id']}.png"
        Image.fromarray(dataset.load_image(image["id"])).save(folder / image["file_name"])
    path = folder / "instances.json"
    path.write_text(json.dumps({k: coco[k] for k in ("images", "annotations", "categories")}))
    return path


def test_train_then_evaluate_and_export_the_checkpoint(tmp_path, capsys):
    train_json = _write_coco_dataset(tmp_path / "train", 3, seed=7)
    val_json = _write_coco_dataset(tmp_path / "val", 2, seed=8)
    values = TinyConfig().to_dict()
    values.update(
        STEPS_PER_EPOCH=1,
        VALIDATION_STEPS=1,
        POST_NMS_ROIS_TRAINING=50,
        TRAIN_ROIS_PER_IMAGE=16,
        NUM_CLASSES=2,
    )  # NUM_CLASSES comes from the dataset (4) instead
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(values))
    logs = tmp_path / "logs"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(train_json),
                "--val-dataset",
                str(val_json),
                "--config",
                str(config),
                "--layers",
                "all",
                "--epochs",
                "1",
                "--logs",
                str(logs),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Training on 3 images, validating on 2; classes ['square', 'circle', 'triangle']" in out
    (run,) = os.listdir(logs)
    saved = json.loads((logs / run / "config.json").read_text())
    assert saved["NUM_CLASSES"] == 4 and saved["CLASS_NAMES"] == ["BG", "square", "circle", "triangle"]
    assert "mask_rcnn_tiny_0001.h5" in os.listdir(logs / run)

    metrics = tmp_path / "metrics.json"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(val_json),
                "--weights",
                "last",
                "--logs",
                str(logs),
                "--config",
                str(logs / run / "config.json"),
                "--json",
                str(metrics),
            ]
        )
        == 0
    )
    assert "COCO-style evaluation of 2 images" in capsys.readouterr().out
    result = json.loads(metrics.read_text())
    assert result["images"] == 2 and -1 <= result["segm"]["AP"] <= 1 and "results" not in result

    export = tmp_path / "export" / "1"
    argv = [
        "export",
        "--weights",
        str(logs / run / "mask_rcnn_tiny_0001.h5"),
        "--logs",
        str(logs),
        "--config",
        str(logs / run / "config.json"),
        "--out",
        str(export),
    ]
    assert main(argv) == 0
    assert (export / "saved_model.pb").is_file()
    assert main(argv) == 2  # the folder exists now
    assert "already exists" in capsys.readouterr().err


def test_shipped_json_configs_load():
    """Every config in samples/configs (used by the README's real-data commands) builds and validates."""
    from mrcnn.backbone import config_callable
    from mrcnn.datasets.shapes import small_backbone

    folder = os.path.join(os.path.dirname(__file__), "..", "samples", "configs")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    assert "scratch_cpu_256.json" in names
    for name in names:
        config, _ = cli.load_config(os.path.join(folder, name), NUM_CLASSES=3)
        assert config.NUM_CLASSES == 3 and config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 3
    config, _ = cli.load_config(os.path.join(folder, "scratch_cpu_256.json"), NUM_CLASSES=2)
    assert config_callable(config, "BACKBONE") is small_backbone and list(config.IMAGE_SHAPE) == [256, 256, 3]
