"""Serving latency per runtime, same run: detect(), SavedModel, onnxruntime, LiteRT, OpenVINO and torchvision.

The model is exported with ``mrcnn.export.export`` to every format (masks="full": the outputs of
``detect()``), each file is loaded in its runtime with ``--cores`` threads, and one uint8 image
(batch 1) goes through each. After one warm-up call each, every one of ``--runs`` rounds times each
runtime once, one after the other, so a change in machine load hits all alike; medians are reported.

Configs:
  coco: Matterport's COCO inference config (ResNet-101, 81 classes, 1024 px square, 6000/1000
    proposals, 100 detections), random weights set up as in bench_inference.py (box regressors zeroed,
    score threshold 0, backbone BatchNorm calibrated) so every runtime does the full work; the peer is
    torchvision's Mask R-CNN set up the same way (``torchvision_peer.py``).
  shapes: the shapes demo's ``ShapesFastConfig`` (small backbone, 128 px, 100 proposals, 20
    detections), random weights set up the same way; no torchvision peer of that architecture.

OpenVINO is timed with INFERENCE_PRECISION_HINT=f32 (detect()'s numbers) and, where the CPU has bf16
instructions, also with the CPU plugin's default (bf16), reported separately.
Usage: python benchmarks/bench_export.py --config coco [--runs 5] [--json PATH] [--markdown PATH]
       [--formats saved_model,onnx,tflite,openvino] [--no-peer]
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import (
    add_isa_argument,
    apply_isa_from_argv,
    core_count,
    cpu_isa,
    isa_line,
    machine_info,
    median,
    timed,
)

apply_isa_from_argv()  # before TensorFlow and torch load: they read the ISA caps once

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:  # torchvision's C extension must load before TensorFlow (see bench_inference.py)
    import torch
    import torchvision.models.detection  # noqa: F401
except ImportError:
    torch = None
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_inference  # noqa: E402

FORMATS = ("saved_model", "onnx", "tflite", "openvino")
SUFFIX = {"saved_model": "", "onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


def build_model(config_name, size, seed=0):
    """An inference MaskRCNN of ``config_name`` with random weights that keep every detection slot busy."""
    keras, _, Config, MaskRCNN, build_backbone, mold_image = bench_inference.import_mrcnn()
    if config_name == "coco":
        config = bench_inference.make_config(Config, size, 101, 1)
        config_bn = bench_inference.make_config(Config, size, 101, 1, train_bn=True)
    else:
        from mrcnn.datasets.shapes import ShapesFastConfig

        attrs = {"IMAGES_PER_GPU": 1, "DETECTION_MIN_CONFIDENCE": 0.0}
        config = type("ShapesServing", (ShapesFastConfig,), attrs)()
        config_bn = config
    keras.utils.set_random_seed(seed)
    model = MaskRCNN(mode="inference", config=config, model_dir=tempfile.mkdtemp(prefix="bench-export-"))
    bench_inference.zero_box_regressors(model.keras_model)
    rng = np.random.default_rng(seed)
    bench_inference.calibrate_backbone_bn(keras, model, config_bn, build_backbone, mold_image, rng)
    return model


def runtime_callables(paths, cores, bf16):
    """name -> function(uint8 [1, H, W, 3]) -> number of detections, for each exported file."""
    runners = {}
    if "saved_model" in paths:
        signature = tf.saved_model.load(paths["saved_model"]).signatures["serving_default"]
        runners["SavedModel"] = lambda images: int(signature(images=tf.constant(images))["num_detections"][0])
    if "onnx" in paths:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cores
        session = onnxruntime.InferenceSession(paths["onnx"], options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        index = names.index("num_detections")
        runners["onnxruntime"] = lambda images: int(session.run(None, {"images": images})[index][0])
    if "tflite" in paths:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=paths["tflite"], num_threads=cores).get_signature_runner()
        runners["LiteRT"] = lambda images: int(runner(images=images)["num_detections"][0])
    if "openvino" in paths:
        import openvino

        core = openvino.Core()
        hints = {"OpenVINO (f32)": {"INFERENCE_PRECISION_HINT": "f32"}}
        if bf16:
            hints["OpenVINO (default: bf16)"] = {}
        for name, hint in hints.items():
            compiled = core.compile_model(paths["openvino"], "CPU", {**hint, "INFERENCE_NUM_THREADS": cores})

            def run(images, compiled=compiled):
                result = compiled({"images": images})
                return int(
                    next(v for port, v in result.items() if port.get_any_name() == "num_detections")[0]
                )

            runners[name] = run
    return runners


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(p)
    p.add_argument("--config", choices=("coco", "shapes"), default="coco")
    p.add_argument("--size", type=int, default=1024, help="coco: square image side (multiple of 64)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--json")
    p.add_argument("--markdown")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    isa = args.isa
    cores = core_count()
    bench_inference.set_tf_threads(cores)
    size = args.size if args.config == "coco" else 128
    model = build_model(args.config, size)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)

    from mrcnn.export import export

    workdir = tempfile.mkdtemp(prefix="bench-export-files-")
    paths, export_s, sizes = {}, {}, {}
    for name in args.formats.split(","):
        target = os.path.join(workdir, "model" + SUFFIX[name])
        export_s[name], paths[name] = timed(lambda: export(model, target, format=name, verbose=0))  # noqa: B023
        files = [paths[name]] if name != "saved_model" else []
        if name == "openvino":
            files.append(paths[name][: -len(".xml")] + ".bin")
        if name == "saved_model":
            files = [os.path.join(root, f) for root, _, names in os.walk(paths[name]) for f in names]
        sizes[name] = sum(os.path.getsize(f) for f in files) / 2**20
        print(f"exported {name} in {export_s[name]:.0f} s ({sizes[name]:.0f} MB)", flush=True)

    runners = {"detect()": lambda images: len(model.detect([images[0]])[0]["class_ids"])}
    runners.update(runtime_callables(paths, cores, cpu_isa()[1] and isa == "native"))
    peer = None
    if args.config == "coco" and not args.no_peer and torch is not None:
        torch.set_num_threads(cores)
        peer_args = argparse.Namespace(depth=101, size=size)
        peer = bench_inference.PeerBench(peer_args, [image])
        runners["torchvision"] = lambda images: (peer.run(), 100)[1]

    batch = image[None]
    warmup, counts, times = {}, {}, {name: [] for name in runners}
    for name, run in runners.items():
        warmup[name], counts[name] = timed(run, batch)
        print(f"warm-up {name}: {warmup[name]:.2f} s, {counts[name]} detections", flush=True)
    for round_index in range(args.runs):
        for name, run in runners.items():
            times[name].append(timed(run, batch)[0])
        print(
            f"round {round_index + 1}/{args.runs}: "
            + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
            flush=True,
        )

    shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: median(values) for name, values in times.items()}
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(cores),
        "settings": {"config": args.config, "size": size, "runs": args.runs, "note": args.note},
        "export_s": export_s,
        "export_mb": sizes,
        "warmup_s": warmup,
        "detections": counts,
        "times_s": times,
        "median_s": medians,
    }
    for module in ("onnxruntime", "openvino", "ai_edge_litert", "tf2onnx"):
        if module in sys.modules:
            report["machine"][module] = getattr(sys.modules[module], "__version__", None)
    lines = markdown(report)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


def markdown(report):
    m, s = report["machine"], report["settings"]
    medians = report["median_s"]
    fastest = min((n for n in medians if n != "torchvision"), key=medians.get)
    lines = [
        f"# Serving latency, {s['config']} config, {s['size']} px, batch 1 ({report['date']})",
        "",
        isa_line(m),
        "",
        f"{m['cores_available']} cores. TF {m['tensorflow']}, onnxruntime {m.get('onnxruntime')}, "
        f"OpenVINO {m.get('openvino')}, "
        f"torch {m.get('torch')}. Median of {s['runs']} rounds. {s['note']}",
        "",
        "| runtime | median s | vs detect() | vs torchvision | detections | export s | size MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = {"SavedModel": "saved_model", "onnxruntime": "onnx", "LiteRT": "tflite"}
    for name, seconds in medians.items():
        key = fmt.get(name, "openvino" if name.startswith("OpenVINO") else None)
        peer = medians.get("torchvision")
        lines.append(
            f"| {name} | {seconds:.3f} | {seconds / medians['detect()']:.2f} | "
            f"{(seconds / peer) if peer else float('nan'):.2f} | {report['detections'][name]} | "
            f"{report['export_s'].get(key, float('nan')):.0f} | "
            f"{report['export_mb'].get(key, float('nan')):.0f} |"
        )
    lines += ["", f"Fastest mrcnn runtime here: {fastest}."]
    return lines


if __name__ == "__main__":
    main()
