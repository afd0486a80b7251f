"""samples/balloon/balloon.py: dataset, colour splash, weights choices, and train -> splash end to end."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrcnn.download import DownloadError
from samples import sample_utils
from samples.balloon import balloon
from tests.shared_paths import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
BALLOON = DATA_DIR / "balloon"
# A tiny configuration for CPU tests (the command line's documented --config option).
TINY = [
    "IMAGES_PER_GPU=1",
    "BACKBONE=resnet50",
    "IMAGE_MIN_DIM=128",
    "IMAGE_MAX_DIM=128",
    "STEPS_PER_EPOCH=1",
    "VALIDATION_STEPS=1",
    "TOP_DOWN_PYRAMID_SIZE=32",
    "FPN_CLASSIF_FC_LAYERS_SIZE=32",
    "FPN_MASK_CONV_LAYERS_SIZE=16",
    "POST_NMS_ROIS_TRAINING=50",
    "POST_NMS_ROIS_INFERENCE=50",
    "PRE_NMS_LIMIT=200",
    "TRAIN_ROIS_PER_IMAGE=16",
    "RPN_TRAIN_ANCHORS_PER_IMAGE=32",
    "DETECTION_MAX_INSTANCES=10",
    "DETECTION_MIN_CONFIDENCE=0.0",
]


def test_balloon_dataset_subsets():
    ds = balloon.BalloonDataset()
    ds.load_balloon(str(BALLOON), "val")
    ds.prepare()
    assert ds.num_images == 13 and ds.class_names == ["BG", "balloon"]
    assert ds.image_reference(0) == ds.image_info[0]["path"] and Path(ds.image_reference(0)).is_file()
    masks, class_ids = ds.load_mask(0)
    assert masks.shape[:2] == ds.load_image(0).shape[:2] and set(class_ids) == {1}
    with pytest.raises(ValueError, match="subset must be one of"):
        balloon.BalloonDataset().load_balloon(str(BALLOON), "test")


def test_color_splash_keeps_colour_inside_masks_only():
    image = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [100, 100, 100]]], np.uint8)
    mask = np.array([[True, False], [False, False]])[:, :, None]
    splash = balloon.color_splash(image, mask)
    assert splash.dtype == np.uint8 and splash.shape == image.shape
    np.testing.assert_array_equal(splash[0, 0], [255, 0, 0])
    # skimage's luminance weights 0.2125 R + 0.7154 G + 0.0721 B, on a 0..255 scale.
    np.testing.assert_array_equal(splash[0, 1], [182] * 3)
    np.testing.assert_array_equal(splash[1, 0], [18] * 3)
    np.testing.assert_array_equal(splash[1, 1], [100] * 3)
    np.testing.assert_array_equal(balloon.color_splash(image, np.zeros((2, 2, 0), bool))[0, 0], [54] * 3)


class _OfflineModel:
    def get_imagenet_weights(self):
        raise Exception(
            "URL fetch failure on https://github.com/...: None -- [Errno -2] Name or service not known"
        )  # what keras.utils.get_file raises offline


def test_weights_downloads_fail_offline_with_a_clear_message(tmp_path):
    target = tmp_path / "mask_rcnn_coco.h5"
    # Port 9 on the loopback interface refuses connections: the same path as being offline.
    with pytest.raises(DownloadError, match="cannot download the COCO weights from https://127.0.0.1:9/"):
        sample_utils.resolve_weights(None, "coco", coco_path=str(target), coco_url="https://127.0.0.1:9/w.h5")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="ImageNet.*--weights PATH"):
        sample_utils.resolve_weights(_OfflineModel(), "imagenet")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        sample_utils.resolve_weights(None, str(tmp_path / "nope.h5"))
    assert sample_utils.resolve_weights(None, "none") == (None, None)
    target.write_bytes(b"present")  # an existing coco file is used as is, with the contract's exclude list
    assert sample_utils.resolve_weights(None, "COCO", coco_path=str(target)) == (
        str(target),
        ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"],
    )


def test_config_overrides():
    config = sample_utils.make_config(
        balloon.BalloonConfig,
        ["IMAGE_MAX_DIM=256", "BACKBONE=resnet50", "RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]"],
    )
    assert config.IMAGE_MAX_DIM == 256 and config.BACKBONE == "resnet50"
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128) and list(config.IMAGE_SHAPE) == [256, 256, 3]
    assert config.NAME == "balloon" and config.NUM_CLASSES == 2
    with pytest.raises(ValueError, match="Unknown configuration attribute 'IMAGE_SIZE'"):
        sample_utils.make_config(balloon.BalloonConfig, ["IMAGE_SIZE=3"])
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        sample_utils.make_config(balloon.BalloonConfig, ["IMAGE_MAX_DIM"])
    with pytest.raises(ValueError, match="multiple of 64"):
        sample_utils.make_config(balloon.BalloonConfig, ["IMAGE_MAX_DIM=100"])
    from mrcnn.backbone import config_callable
    from mrcnn.datasets.shapes import small_backbone, small_backbone_shapes

    config = sample_utils.make_config(
        balloon.BalloonConfig,
        [
            "BACKBONE=mrcnn.datasets.shapes:small_backbone",
            "COMPUTE_BACKBONE_SHAPE=mrcnn.datasets.shapes:small_backbone_shapes",
        ],
    )
    assert config_callable(config, "BACKBONE") is small_backbone
    assert config_callable(config, "COMPUTE_BACKBONE_SHAPE") is small_backbone_shapes
    with pytest.raises(ValueError, match="cannot import 'nothing' from 'mrcnn.datasets.shapes'"):
        sample_utils.make_config(balloon.BalloonConfig, ["BACKBONE=mrcnn.datasets.shapes:nothing"])


def test_command_line_argument_errors(capsys):
    for argv, message in [
        (["splash", "--weights", "none"], "splash needs --image or --video"),
        (["train", "--weights", "none"], "train needs --dataset"),
        (["fly", "--weights", "none"], "invalid choice"),
        (
            ["train", "--weights", "none", "--dataset", "x", "--config", "NOPE=1"],
            "Unknown configuration attribute 'NOPE'",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            balloon.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_video_formats_without_a_backend(tmp_path, monkeypatch):
    monkeypatch.setattr(balloon, "_video_plugin", lambda: None)
    (tmp_path / "clip.mp4").write_bytes(b"\0")
    with pytest.raises(RuntimeError, match="pip install av"):
        balloon.detect_and_color_splash(None, video_path=str(tmp_path / "clip.mp4"), out_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="video not found"):
        balloon.detect_and_color_splash(None, video_path=str(tmp_path / "none.gif"), out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="exactly one"):
        balloon.detect_and_color_splash(None)


@pytest.fixture(scope="module")
def trained_logs(tmp_path_factory):
    """`balloon.py train` through its main() (in-process): one step of a tiny model from scratch."""
    logs = tmp_path_factory.mktemp("balloon_logs")
    argv = ["train", "--dataset", str(BALLOON), "--weights", "none", "--logs", str(logs), "--epochs", "1"]
    for item in TINY:
        argv += ["--config", item]
    assert balloon.main(argv) == 0
    return logs


def test_train_then_splash_command_line(trained_logs, tmp_path):
    checkpoints = list(trained_logs.glob("balloon*/mask_rcnn_balloon_0001.h5"))
    assert len(checkpoints) == 1
    frames = [Image.fromarray(np.full((64, 96, 3), value, np.uint8)) for value in (40, 200)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
    image_path = sorted((BALLOON / "val").glob("*.jpg"))[0]
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(ROOT / "samples" / "balloon" / "balloon.py"),
        "splash",
        "--weights",
        "last",
        "--logs",
        str(trained_logs),
        "--image",
        str(image_path),
        "--video",
        str(tmp_path / "clip.gif"),
        "--out",
        str(out),
    ]
    for item in TINY:
        command += ["--config", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Loading weights {checkpoints[0]}" in result.stdout and "Splashed 2 frames" in result.stdout
    (picture,) = out.glob("splash_*.png")
    (video,) = out.glob("splash_*.gif")
    with Image.open(image_path) as original, Image.open(picture) as splash:
        assert splash.size == original.size and splash.mode == "RGB"
    with Image.open(video) as splashed:
        assert splashed.n_frames == 2 and splashed.size == (96, 64)


def test_train_without_dataset_dir_uses_the_command_line_or_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(balloon, "args", None)
    with pytest.raises(ValueError, match="dataset_dir"):
        balloon.train(model=None)
    monkeypatch.setattr(
        balloon,
        "args",
        balloon.build_parser().parse_args(["train", "--dataset", "/nowhere/balloon", "--weights", "none"]),
    )

    class Loaded(Exception):
        pass

    def record(self, dataset_dir, subset):
        raise Loaded(dataset_dir, subset)

    monkeypatch.setattr(balloon.BalloonDataset, "load_balloon", record)
    with pytest.raises(Loaded) as loaded:
        balloon.train(model=None)
    assert loaded.value.args == ("/nowhere/balloon", "train")
