"""SavedModel, ONNX, TFLite/LiteRT and OpenVINO exports of a trained model against ``MaskRCNN.detect``.

Each format is exported once, then run in a subprocess that imports only its runtime (never mrcnn;
neither keras nor tensorflow except for the SavedModel, whose loader imports both) on a batch of two
images and on one image of another size. ``detect()`` runs with its default CPU kernels (Winograd
convolutions, blocked NMS); the SavedModel runs TensorFlow's own kernels (``mrcnn.kernels.disabled()``),
the other formats the graph traced inside ``mrcnn.kernels.portable()``; OpenVINO is compiled with
INFERENCE_PRECISION_HINT=f32. On the trained weights of ``export_weights.py`` they must
agree as docs/serving.md promises: the same number of detections and class ids, boxes within 1 px,
scores within 1e-3 and at least 99% of mask pixels.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_weights import WEIGHTS, ExportShapesConfig

import mrcnn.model as modellib
from mrcnn.datasets.shapes import make_dataset
from mrcnn.export import export

FORMATS = ("saved_model", "onnx", "tflite", "openvino")
SUFFIX = {"saved_model": "", "onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = modellib.MaskRCNN("inference", ExportShapesConfig(), str(tmp_path_factory.mktemp("logs")))
    model.load_weights(str(WEIGHTS), by_name=True)
    return model


@pytest.fixture(scope="module")
def images():
    """Shapes images: a batch of two 128x128 ones and a 96x160 one (resized by the square mode)."""
    square = make_dataset(2, seed=7)
    wide = make_dataset(1, seed=8, size=160)
    pair = np.stack([square.load_image(i) for i in square.image_ids])
    single = wide.load_image(0)[32:128]  # 96 x 160
    return {"pair": pair, "single": single[None]}


@pytest.fixture(scope="module")
def expected(trained, images):
    return {name: trained.detect(list(batch)) for name, batch in images.items()}


_RUN_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np

    runtime, model_path, inputs_path, outputs_path = sys.argv[1:5]
    inputs = np.load(inputs_path)
    results = {}
    if runtime == "saved_model":
        import tensorflow as tf
        signature = tf.saved_model.load(model_path).signatures["serving_default"]
        run = lambda images: {k: v.numpy() for k, v in signature(images=tf.constant(images)).items()}
    elif runtime == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        run = lambda images: dict(zip(names, session.run(None, {"images": images})))
    elif runtime == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        runner = Interpreter(model_path=model_path).get_signature_runner("serving_default")
        run = lambda images: runner(images=images)
    else:
        import openvino
        compiled = openvino.Core().compile_model(model_path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        run = lambda images: {port.get_any_name(): v for port, v in compiled({"images": images}).items()}
    for key in inputs.files:
        for name, value in run(inputs[key]).items():
            results[f"{key}/{name}"] = np.asarray(value)
    for module in ("mrcnn",) + (("keras", "tensorflow") if runtime != "saved_model" else ()):
        assert module not in sys.modules, f"running the {runtime} model imported {module}"
    np.savez(outputs_path, **results)
""")


def _run_in_runtime(runtime, model_path, images, tmp_path):
    inputs, outputs = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs, **images)
    script = tmp_path / "run.py"
    script.write_text(_RUN_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(script), runtime, model_path, str(inputs), str(outputs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(outputs)
    return {
        key: {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(key + "/")} for key in images
    }


def assert_same_detections(outputs, row, result, score_tolerance=1e-3):
    """Row ``row`` of an export's outputs equals ``detect()``'s ``result`` (see the module docstring)."""
    count = int(outputs["num_detections"][row])
    assert count == len(result["class_ids"]) > 0
    np.testing.assert_array_equal(outputs["class_ids"][row, :count], result["class_ids"])
    assert np.abs(outputs["boxes"][row, :count] - result["rois"]).max() <= 1
    np.testing.assert_allclose(outputs["scores"][row, :count], result["scores"], atol=score_tolerance)
    masks = outputs["masks"][row, :count].astype(bool)
    assert masks.shape == result["masks"].transpose(2, 0, 1).shape
    assert (masks == result["masks"].transpose(2, 0, 1)).mean() >= 0.99
    for name in ("boxes", "class_ids", "scores", "masks"):
        assert not outputs[name][row, count:].any(), f"{name} rows past num_detections are not zero"


@pytest.mark.parametrize("runtime", FORMATS)
def test_export_runs_alone_in_its_runtime_and_matches_detect(runtime, trained, images, expected, tmp_path):
    path = trained.export(tmp_path / f"model{SUFFIX[runtime]}", format=runtime, verbose=0)
    assert path == str(tmp_path / f"model{SUFFIX[runtime]}") and os.path.exists(path)
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []  # no staging left behind
    if runtime == "openvino":
        assert os.path.isfile(str(tmp_path / "model.bin"))
    outputs = _run_in_runtime(runtime, path, images, tmp_path)
    assert outputs["pair"]["boxes"].dtype == np.float32 and outputs["pair"]["class_ids"].dtype == np.int32
    assert outputs["pair"]["masks"].shape == (2, 10, 128, 128) and outputs["pair"]["masks"].dtype == np.uint8
    assert outputs["single"]["masks"].shape == (1, 10, 96, 160)
    for row, result in enumerate(expected["pair"]):
        assert_same_detections(outputs["pair"], row, result)
    assert_same_detections(outputs["single"], 0, expected["single"][0])


def test_tflite_box_masks_and_float16_weights(trained, images, expected, tmp_path):
    """masks="boxes" gives the mask head's 28x28 probabilities; float16 weights keep the detections."""
    path = export(trained, tmp_path / "half", format="tflite", masks="boxes", quantize="float16", verbose=0)
    assert path.endswith("half.tflite")
    outputs = _run_in_runtime("tflite", path, {"pair": images["pair"]}, tmp_path)["pair"]
    assert outputs["masks"].shape == (2, 10, 28, 28) and outputs["masks"].dtype == np.float32
    for row, result in enumerate(expected["pair"]):
        count = int(outputs["num_detections"][row])
        assert count == len(result["class_ids"])
        np.testing.assert_array_equal(outputs["class_ids"][row, :count], result["class_ids"])
        assert np.abs(outputs["boxes"][row, :count] - result["rois"]).max() <= 2
        pasted = modellib.paste_masks(outputs["masks"][row, :count], result["rois"], (128, 128))
        assert (pasted == result["masks"]).mean() >= 0.98


def test_cli_exports_a_trained_checkpoint(images, expected, tmp_path, capsys):
    """``mrcnn export --format tflite`` on a weights file, with the config given as NAME=VALUE items."""
    from mrcnn.cli import main

    config = ExportShapesConfig()
    settings = [
        f"{name}={getattr(config, name)}"
        for name in (
            "TOP_DOWN_PYRAMID_SIZE",
            "FPN_CLASSIF_FC_LAYERS_SIZE",
            "FPN_MASK_CONV_LAYERS_SIZE",
            "IMAGE_MIN_DIM",
            "IMAGE_MAX_DIM",
            "POST_NMS_ROIS_INFERENCE",
            "DETECTION_MAX_INSTANCES",
            "DETECTION_MIN_CONFIDENCE",
        )
    ]
    argv = ["export", "--format", "tflite", "--weights", str(WEIGHTS), "--logs", str(tmp_path / "logs")]
    argv += ["--config", "shapes", *[item for s in settings for item in ("--config", s)]]
    argv += ["--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    assert f"Exported tflite model to {tmp_path / 'cli.tflite'}" in capsys.readouterr().out
    outputs = _run_in_runtime("tflite", str(tmp_path / "cli.tflite"), {"pair": images["pair"]}, tmp_path)
    for row, result in enumerate(expected["pair"]):
        assert_same_detections(outputs["pair"], row, result)
    assert main(argv) == 2  # the file exists now
    assert "already exists" in capsys.readouterr().err


############################################################
#  Errors
############################################################


def test_unknown_format_and_misplaced_options_are_refused(trained, tmp_path):
    with pytest.raises(ValueError, match="Unknown export format 'torchscript'"):
        trained.export(tmp_path / "m", format="torchscript")
    with pytest.raises(ValueError, match="format='tflite' only"):
        trained.export(tmp_path / "m.onnx", format="onnx", quantize="float16")
    with pytest.raises(ValueError, match="masks must be one of"):
        trained.export(tmp_path / "m.onnx", format="onnx", masks="both")
    assert os.listdir(tmp_path) == []


def test_training_model_and_existing_file_are_refused(tmp_path):
    training = modellib.MaskRCNN("training", ExportShapesConfig(), str(tmp_path / "logs"))
    with pytest.raises(ValueError, match="inference mode"):
        training.export(tmp_path / "m.onnx", format="onnx")


def test_existing_file_needs_overwrite(trained, tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"an older model")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.export(target, format="tflite", verbose=0)
    assert target.read_bytes() == b"an older model"


@pytest.mark.parametrize(
    "runtime, module",
    [("onnx", "tf2onnx"), ("tflite", "ai_edge_litert.interpreter"), ("openvino", "openvino")],
)
def test_missing_runtime_names_the_extra(runtime, module, trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes ``import module`` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "mrcnn\[export\]"'):
        trained.export(tmp_path / f"m{SUFFIX[runtime]}", format=runtime, verbose=0)
    assert os.listdir(tmp_path) == []
