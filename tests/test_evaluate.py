"""COCO-style evaluation: cocoapi's fake results, ground truth round trips, evaluate_coco, the callback."""

import json
import re

import keras
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tiny_configs import Shapes64Config

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.datasets.shapes import ShapesDataset
from mrcnn.evaluate import (
    COCO_STAT_NAMES,
    EvaluationCallback,
    coco_metrics,
    dataset_to_coco,
    detections_to_coco,
    evaluate_coco,
)
from mrcnn.training import training_callbacks
from tests.shared_paths import DATA_DIR

COCOAPI_RESULTS = DATA_DIR / "cocoapi_results" / "results"
VAL2014_100 = (
    DATA_DIR / "faster_coco_eval_tests" / "tests" / "dataset" / "cocoapi" / "instances_val2014_100.json"
)


def expected_summaries():
    """{iou type: [12 numbers]} parsed from cocoapi's val2014_fake_eval_res.txt."""
    text = (COCOAPI_RESULTS / "val2014_fake_eval_res.txt").read_text()
    blocks = {}
    for block in text.split("type=")[1:]:
        iou_type = block.split()[0]
        blocks[iou_type] = [float(v) for v in re.findall(r"\] = (-?[0-9.]+)", block)]
    return blocks


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_cocoapi_fake_results_reproduce_expected_summary(iou_type):
    expected = expected_summaries()[iou_type]
    assert len(expected) == 12 and expected[0] == {"segm": 0.320, "bbox": 0.505}[iou_type]
    gt = COCO(str(VAL2014_100))
    metrics = coco_metrics(
        gt, str(COCOAPI_RESULTS / f"instances_val2014_fake{iou_type}100_results.json"), iou_type
    )
    assert [round(metrics[name], 3) for name in COCO_STAT_NAMES] == expected
    assert len(metrics["per_class_ap"]) == 80
    defined = [ap for ap in metrics["per_class_ap"].values() if ap >= 0]
    # AP@[.5:.95] is the mean over the categories that have ground truth.
    assert np.isclose(np.mean(defined), metrics["AP"])


class SquaresDataset(utils.Dataset):
    """Three 64x48 images: two squares and a crowd region, one circle-free image, one image with none."""

    MASKS = {
        0: [((5, 10, 25, 30), 1), ((30, 20, 50, 44), 2), ((52, 0, 64, 12), -1)],
        1: [((0, 0, 40, 40), 2)],
        2: [],
    }

    def __init__(self):
        super().__init__()
        self.add_class("toy", 1, "square")
        self.add_class("toy", 2, "block")
        for i in self.MASKS:
            self.add_image("toy", image_id=i, path=None, height=64, width=48)
        self.prepare()

    def load_image(self, image_id):
        return np.full((64, 48, 3), 30 * image_id, dtype=np.uint8)

    def load_mask(self, image_id):
        specs = self.MASKS[image_id]
        masks = np.zeros((64, 48, len(specs)), dtype=bool)
        for i, ((y1, x1, y2, x2), _) in enumerate(specs):
            masks[y1:y2, x1:x2, i] = True
        return masks, np.array([c for _, c in specs], dtype=np.int32)


def gt_as_detections(dataset, drop=()):
    results = []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        keep = [i for i in range(len(class_ids)) if class_ids[i] > 0 and (image_id, i) not in drop]
        masks, class_ids = masks[..., keep], class_ids[keep]
        results += detections_to_coco(
            image_id, utils.extract_bboxes(masks), class_ids, np.linspace(0.9, 0.8, len(keep)), masks
        )
    return results


def test_dataset_to_coco_structure():
    gt = dataset_to_coco(SquaresDataset())
    assert sorted(gt.getImgIds()) == [0, 1, 2]
    assert gt.imgs[2] == {"id": 2, "height": 64, "width": 48}
    assert [(c["id"], c["name"]) for c in gt.dataset["categories"]] == [(1, "square"), (2, "block")]
    anns = gt.imgToAnns[0]
    assert [(a["category_id"], a["iscrowd"]) for a in anns] == [(1, 0), (2, 0), (1, 1)]
    # Square rows 5..24, columns 10..29: COCO box [x, y, w, h] = [10, 5, 20, 20], area 400.
    assert anns[0]["bbox"] == [10.0, 5.0, 20.0, 20.0] and anns[0]["area"] == 400.0
    assert anns[2]["bbox"] == [0.0, 52.0, 12.0, 12.0]
    np.testing.assert_array_equal(gt.annToMask(anns[1]), SquaresDataset().load_mask(0)[0][..., 1])
    assert gt.imgToAnns[2] == [] and len(gt.getAnnIds()) == 4
    only = dataset_to_coco(SquaresDataset(), image_ids=[1])
    assert only.getImgIds() == [1] and len(only.getAnnIds()) == 1


def test_detections_to_coco_boxes_masks_and_category_mapping():
    masks = np.zeros((20, 30, 2), dtype=bool)
    masks[2:6, 3:10, 0] = True
    masks[10:20, 0:30, 1] = True
    rois = np.array([[2, 3, 6, 10], [10, 0, 20, 30]], dtype=np.int32)
    results = detections_to_coco(7, rois, np.array([1, 2]), np.array([0.9, 0.5], np.float32), masks)
    assert [r["bbox"] for r in results] == [[3.0, 2.0, 7.0, 4.0], [0.0, 10.0, 30.0, 10.0]]
    assert [r["category_id"] for r in results] == [1, 2] and [r["image_id"] for r in results] == [7, 7]
    assert isinstance(results[0]["score"], float) and results[0]["score"] == pytest.approx(0.9)
    json.dumps(results)  # JSON-serializable: RLE counts are str
    for i, r in enumerate(results):
        assert isinstance(r["segmentation"]["counts"], str) and r["segmentation"]["size"] == [20, 30]
        rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), masks[..., i])
        assert list(mask_utils.toBbox(rle)) == r["bbox"]
    mapped = detections_to_coco(7, rois, [1, 2], [0.9, 0.5], masks, category_ids={1: 18, 2: 44})
    assert [r["category_id"] for r in mapped] == [18, 44]
    called = detections_to_coco(7, rois, [1, 2], [0.9, 0.5], None, category_ids=lambda c: 100 + c)
    assert [r["category_id"] for r in called] == [101, 102] and "segmentation" not in called[0]
    assert detections_to_coco(1, np.zeros((0, 4)), [], [], np.zeros((20, 30, 0), bool)) == []
    with pytest.raises(ValueError, match="masks must be"):
        detections_to_coco(7, rois, [1, 2], [0.9, 0.5], masks[..., :1])
    with pytest.raises(TypeError, match="category_ids"):
        detections_to_coco(7, rois, [1, 2], [0.9, 0.5], masks, category_ids=[18, 44])


def test_ground_truth_as_detections_scores_one_and_misses_lower_it():
    dataset = SquaresDataset()
    gt = dataset_to_coco(dataset)
    perfect = gt_as_detections(dataset)
    assert len(perfect) == 3  # the crowd region is not a detection
    for iou_type in ("bbox", "segm"):
        metrics = coco_metrics(gt, perfect, iou_type)
        assert metrics["AP"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
        assert metrics["per_class_ap"] == {"square": pytest.approx(1.0), "block": pytest.approx(1.0)}
    # Without the "square" (the only one): its class AP is 0, "block" stays 1, the mean is 0.5.
    missing = coco_metrics(gt, gt_as_detections(dataset, drop={(0, 0)}), "segm")
    assert missing["per_class_ap"] == {"square": 0.0, "block": pytest.approx(1.0)}
    assert missing["AP"] == pytest.approx(0.5)
    # Restricting the evaluation to image 1 leaves only "block" with ground truth.
    only_1 = coco_metrics(gt, perfect, "bbox", image_ids=[1])
    assert only_1["per_class_ap"]["square"] == -1.0 and only_1["AP"] == pytest.approx(1.0)
    empty = coco_metrics(gt, [], "segm")
    assert empty["AP"] == 0.0 and empty["AR100"] == 0.0


def test_detection_on_crowd_region_is_ignored_and_box_shift_lowers_ap():
    dataset = SquaresDataset()
    gt = dataset_to_coco(dataset)
    crowd = np.zeros((64, 48, 1), bool)
    crowd[52:64, 0:12] = True
    extra = detections_to_coco(0, [[52, 0, 64, 12]], [1], [0.95], crowd)
    assert coco_metrics(gt, gt_as_detections(dataset) + extra, "segm")["AP"] == pytest.approx(1.0)
    # The 20x20 square shifted by 8 px: IoU = 12*20 / (2*400 - 240) = 0.43 < 0.5, a miss at every IoU.
    shifted = [dict(r) for r in gt_as_detections(dataset)]
    shifted[0]["bbox"] = [18.0, 5.0, 20.0, 20.0]
    assert coco_metrics(gt, shifted, "bbox")["per_class_ap"]["square"] == 0.0


def test_results_json_round_trip(tmp_path):
    dataset = SquaresDataset()
    gt = dataset_to_coco(dataset)
    results = gt_as_detections(dataset, drop={(0, 1)})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    loaded = gt.loadRes(str(path))
    assert len(loaded.getAnnIds()) == 2
    assert loaded.anns[1]["bbox"] == results[0]["bbox"]
    for iou_type in ("bbox", "segm"):
        from_file = coco_metrics(gt, str(path), iou_type)
        from_list = coco_metrics(gt, results, iou_type)
        assert from_file == from_list and from_file["AP"] < 1.0


def test_coco_metrics_bad_input(tmp_path):
    gt = dataset_to_coco(SquaresDataset())
    boxes_only = [{"image_id": 0, "category_id": 1, "bbox": [10, 5, 20, 20], "score": 0.9}]
    assert coco_metrics(gt, boxes_only, "bbox")["per_class_ap"]["square"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no 'segmentation'"):
        coco_metrics(gt, boxes_only, "segm")
    with pytest.raises(ValueError, match="iou_type"):
        coco_metrics(gt, boxes_only, "keypoints")
    with pytest.raises(ValueError, match=r"not in the ground truth: \[99\]"):
        coco_metrics(gt, [dict(boxes_only[0], image_id=99)], "bbox")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        coco_metrics(gt, str(tmp_path / "missing.json"), "bbox")


class TinyConfig(Shapes64Config):
    NAME = "evaltiny"
    IMAGES_PER_GPU = 2
    TRAIN_ROIS_PER_IMAGE = 8
    POST_NMS_ROIS_TRAINING = 32
    POST_NMS_ROIS_INFERENCE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    DETECTION_MIN_CONFIDENCE = 0.0
    DETECTION_MAX_INSTANCES = 10


def shapes(count, seed):
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


def test_evaluate_coco_on_random_model(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("inference", TinyConfig(), str(tmp_path))
    dataset = shapes(5, seed=3)
    out = evaluate_coco(model, dataset, limit=3, verbose=1)
    assert set(out) == {"bbox", "segm", "mAP50_voc", "results", "images", "seconds"}
    assert out["images"] == 3
    for iou_type in ("bbox", "segm"):
        assert set(out[iou_type]) == set(COCO_STAT_NAMES) | {"per_class_ap"}
        assert set(out[iou_type]["per_class_ap"]) == {"square", "circle", "triangle"}
        assert all(-1.0 <= out[iou_type][name] <= 1.0 for name in COCO_STAT_NAMES)
    assert 0.0 <= out["mAP50_voc"] <= 1.0
    assert out["results"] and {r["image_id"] for r in out["results"]} <= {0, 1, 2}
    assert len(out["results"]) <= 3 * TinyConfig.DETECTION_MAX_INSTANCES
    # The returned results re-evaluate to the same numbers.
    again = coco_metrics(dataset_to_coco(dataset, [0, 1, 2]), out["results"], "segm")
    assert again == out["segm"]
    printed = capsys.readouterr().out
    assert "COCO-style evaluation of 3 images" in printed and "mask mAP@0.5 (VOC, compute_ap)" in printed
    bbox_only = evaluate_coco(model, dataset, image_ids=[4], iou_types=("bbox",), verbose=0)
    assert "segm" not in bbox_only and bbox_only["images"] == 1
    with pytest.raises(ValueError, match="iou_types"):
        evaluate_coco(model, dataset, iou_types=("mask",), verbose=0)


def test_evaluation_callback_copies_weights_and_logs(tmp_path):
    keras.utils.set_random_seed(1)
    config = TinyConfig()
    training = modellib.MaskRCNN("training", config, str(tmp_path))
    callback = EvaluationCallback(shapes(2, seed=4), every=2, config=config, log_dir=str(tmp_path / "run"))
    callback.set_model(training.keras_model)
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)  # epoch 1 of every 2: nothing happens
    assert logs == {"loss": 1.0} and callback.history == {} and callback._inference is None
    callback.on_epoch_end(1, logs)
    expected = {"val_mAP50_voc"} | {f"val_{t}_{n}" for t in ("bbox", "segm") for n in ("AP", "AP50", "AP75")}
    assert set(logs) == {"loss"} | expected
    assert logs["val_segm_AP"] == callback.history[1]["segm"]["AP"]
    inference = callback._inference.keras_model
    for name in ("mrcnn_mask", "fpn_p2", "rpn_model"):
        source = training.keras_model.get_layer(name).get_weights()
        for a, b in zip(inference.get_layer(name).get_weights(), source, strict=True):
            np.testing.assert_array_equal(a, b)
    # Training changes the weights; the next evaluation copies them again into the same cached model.
    layer = training.keras_model.get_layer("mrcnn_mask")
    layer.set_weights([w + 1.0 for w in layer.get_weights()])
    callback.on_epoch_end(3, logs)
    assert callback._inference.keras_model is inference and sorted(callback.history) == [1, 3]
    np.testing.assert_array_equal(inference.get_layer("mrcnn_mask").get_weights()[0], layer.get_weights()[0])
    callback.on_train_end()
    events = list((tmp_path / "run" / "evaluation").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    with pytest.raises(ValueError, match="every"):
        EvaluationCallback(shapes(1, seed=4), every=0)
    # Without config= the callback gets the config of the MaskRCNN it trains with (handed over by the
    # training run's callbacks, not attached to the Keras model); a bare Keras model has none.
    bare = EvaluationCallback(shapes(1, seed=4), every=5)
    callbacks = training_callbacks(
        config, training.keras_model, str(tmp_path), "ckpt_{epoch:04d}.h5", None, [bare]
    )
    assert callbacks[-1] is bare
    bare.set_model(training.keras_model)
    assert bare._inference_model().config is config
    assert not hasattr(training.keras_model, "mrcnn_config")
    bare = EvaluationCallback(shapes(1, seed=4), every=5)
    plain = keras.Model(training.keras_model.inputs, training.keras_model.outputs)
    bare.set_model(plain)
    with pytest.raises(ValueError, match="pass config="):
        bare.on_epoch_end(4, {})
