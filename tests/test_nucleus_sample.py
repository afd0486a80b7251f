"""samples/nucleus/nucleus.py: RLE helpers, subsets, and train -> detect (submit.csv + PNGs) end to end."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samples.nucleus import nucleus
from tests.shared_paths import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
DSB_TEST = DATA_DIR / "dsb2018_stage1_test_subset" / "stage1_test"
# Two 256x256 images (one RGBA, one RGB) with few nuclei keep the end-to-end run short.
SMALL_IDS = [
    "0114f484a16c152baa2d82fdd43740880a762c93f436c8988ac461c5c9dbe7d5",
    "0a849e0eb15faa8a6d7329c3dd66aabe9a294cccb52ed30a90c8ca99092ae732",
]
TINY = [
    "IMAGES_PER_GPU=1",
    "IMAGE_MIN_DIM=128",
    "IMAGE_MAX_DIM=128",
    "IMAGE_MIN_SCALE=1.0",
    "STEPS_PER_EPOCH=1",
    "VALIDATION_STEPS=1",
    "TOP_DOWN_PYRAMID_SIZE=32",
    "FPN_CLASSIF_FC_LAYERS_SIZE=32",
    "FPN_MASK_CONV_LAYERS_SIZE=16",
    "PRE_NMS_LIMIT=200",
    "POST_NMS_ROIS_TRAINING=50",
    "POST_NMS_ROIS_INFERENCE=50",
    "TRAIN_ROIS_PER_IMAGE=16",
    "MAX_GT_INSTANCES=60",
    "DETECTION_MAX_INSTANCES=20",
]


def test_rle_encode_hand_computed_and_round_trip():
    mask = np.zeros((4, 3), bool)
    mask[1:3, 0] = True
    mask[0, 2] = mask[3, 2] = True
    # Column-major, 1-based: column 0 rows 1-2 -> pixels 2-3; column 2 rows 0 and 3 -> pixels 9 and 12.
    assert nucleus.rle_encode(mask) == "2 2 9 1 12 1"
    np.testing.assert_array_equal(nucleus.rle_decode("2 2 9 1 12 1", (4, 3)), mask)
    assert nucleus.rle_encode(np.zeros((3, 3))) == ""
    assert nucleus.rle_encode(np.ones((2, 3))) == "1 6"
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (16, 9)]:
        random = rng.random(shape) > 0.5
        np.testing.assert_array_equal(nucleus.rle_decode(nucleus.rle_encode(random), shape), random)
    with pytest.raises(ValueError, match="odd count"):
        nucleus.rle_decode("1 2 3", (4, 4))
    with pytest.raises(ValueError, match="outside a 2x2 image"):
        nucleus.rle_decode("3 3", (2, 2))
    with pytest.raises(ValueError, match="2-D"):
        nucleus.rle_encode(np.zeros((2, 2, 1)))


def test_mask_to_rle_gives_overlaps_to_the_higher_score():
    masks = np.zeros((3, 3, 3), bool)
    masks[0, :, 0] = True  # low score, fully covered by instance 1: dropped
    masks[:2, :, 1] = True  # highest score
    masks[:, 2, 2] = True  # middle score, overlaps instance 1 in rows 0-1
    text = nucleus.mask_to_rle("img", masks, np.array([0.1, 0.9, 0.5]))
    assert text.splitlines() == ["img,1 2 4 2 7 2", "img,9 1"]
    decoded = [nucleus.rle_decode(line.split(",")[1], (3, 3)) for line in text.splitlines()]
    assert not (decoded[0] & decoded[1]).any()
    assert nucleus.mask_to_rle("img", np.zeros((3, 3, 0), bool), np.zeros(0)) == "img,"
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        nucleus.mask_to_rle("img", np.zeros((3, 3)), [1.0])


def test_subsets_train_val_and_folders(tmp_path):
    val_id, other_id = nucleus.VAL_IMAGE_IDS[0], "other"
    for image_id in nucleus.VAL_IMAGE_IDS + [other_id]:
        (tmp_path / "stage1_train" / image_id / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
            tmp_path / "stage1_train" / image_id / "images" / f"{image_id}.png"
        )
    subsets = {}
    for subset in ("train", "val", "stage1_train"):
        ds = nucleus.NucleusDataset()
        ds.load_nucleus(str(tmp_path), subset)
        ds.prepare()
        subsets[subset] = [ds.image_reference(i) for i in ds.image_ids]
        assert ds.class_names == ["BG", "nucleus"]
    assert subsets["train"] == [other_id]
    assert subsets["val"] == nucleus.VAL_IMAGE_IDS and val_id in subsets["val"]
    assert len(subsets["stage1_train"]) == 26
    with pytest.raises(FileNotFoundError, match="stage2_test"):
        nucleus.NucleusDataset().load_nucleus(str(tmp_path), "stage2_test")


def test_configs_match_the_contract():
    config, inference = nucleus.NucleusConfig(), nucleus.NucleusInferenceConfig()
    assert (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS, config.BACKBONE) == (105, 4, "resnet50")
    assert list(config.IMAGE_SHAPE) == [512, 512, 3] and config.IMAGE_RESIZE_MODE == "crop"
    assert (inference.BATCH_SIZE, inference.IMAGE_RESIZE_MODE) == (1, "pad64")
    assert inference.RPN_NMS_THRESHOLD == 0.7 and config.RPN_NMS_THRESHOLD == 0.9


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsb")
    (root / "stage1_test").mkdir()
    for image_id in SMALL_IDS:
        (root / "stage1_test" / image_id).symlink_to(DSB_TEST / image_id, target_is_directory=True)
    return root


def test_train_then_detect_command_line(small_dataset, tmp_path):
    # train through main() in-process, then the real `nucleus.py detect` command in a subprocess
    logs = tmp_path / "logs"
    argv = [
        "train",
        "--dataset",
        str(small_dataset),
        "--subset",
        "stage1_test",
        "--weights",
        "none",
        "--logs",
        str(logs),
        "--epochs",
        "1",
        "1",
    ]
    for item in TINY:
        argv += ["--config", item]
    assert nucleus.main(argv) == 0
    assert len(list(logs.glob("nucleus*/mask_rcnn_nucleus_0001.h5"))) == 1

    command = [
        sys.executable,
        str(ROOT / "samples" / "nucleus" / "nucleus.py"),
        "detect",
        "--dataset",
        str(small_dataset),
        "--subset",
        "stage1_test",
        "--weights",
        "last",
        "--logs",
        str(logs),
        "--results",
        str(tmp_path / "results"),
    ]
    for item in TINY:
        command += ["--config", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (submit_dir,) = (tmp_path / "results").glob("submit_*")
    with open(submit_dir / "submit.csv") as f:
        assert f.readline().strip() == "ImageId,EncodedPixels"
        rows = list(csv.reader(f))
    assert {row[0] for row in rows} == set(SMALL_IDS)
    for image_id in SMALL_IDS:
        claimed = np.zeros((256, 256), int)
        for row in rows:
            if row[0] == image_id and row[1]:
                claimed += nucleus.rle_decode(row[1], (256, 256))
        assert claimed.max() <= 1, "no pixel in two nuclei"
        with Image.open(submit_dir / f"{image_id}.png") as picture:
            assert picture.width >= 200 and picture.height >= 200
