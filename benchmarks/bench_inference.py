"""Inference benchmark: mrcnn's ``MaskRCNN.detect()`` against torchvision's Mask R-CNN, same process, CPU.

Both networks have random weights and the COCO inference setup: square ``size`` x ``size`` input,
ResNet-{50,101}-FPN, 81 classes, 6000 pre-NMS / 1000 post-NMS proposals, 100 detections. To make both
do the full work with random weights, the final box regressors (RPN and box head) are zeroed, so
proposals are anchors and detections are proposals, and the score threshold is 0, so the mask head
always runs on 100 boxes. Backbone BatchNorm statistics are calibrated on one random batch on both sides
(see ``calibrate_backbone_bn``).

Both models are built and warmed up (one call: tracing, allocation) first; then each of ``--runs`` runs
times ours and then the peer, one after the other, so that a change in machine load (the machine may be
shared) hits both alike. Reported: the median over the runs of
  ours: ``detect()`` end to end on uint8 [size, size, 3] images; the graph call alone (the Keras model
    in a ``tf.function``, outputs copied to numpy, as ``detect()`` does); ``mold_inputs`` and
    ``unmold_detections`` (mask pasting included). Post-processing share = (mold + unmold) / detect.
  peer: torchvision ``model(images)`` under ``torch.inference_mode()`` on the same pixels as float
    [3, size, size] tensors in [0, 1]; its transform (normalize / resize) and postprocess (box scaling,
    mask pasting) are timed through wrappers, giving the peer's pre+post share.
  stages (``--stages``): cumulative time of the graph cut after each stage of ``STAGES`` (outputs
    summed inside the graph, not copied out); the differences are each stage's cost.

torch is optional (``pip install -e ".[benchmark]"``): without it only ours is timed.
Usage: python benchmarks/bench_inference.py [--size 1024] [--depth 101] [--batch 1] [--runs 3]
       [--json PATH] [--markdown PATH] [--note TEXT] [--stages] [--no-peer]
       [--precision float32|mixed_bfloat16] [--flops]
"""

import argparse
import datetime
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    add_isa_argument,
    apply_isa_from_argv,
    core_count,
    isa_line,
    machine_info,
    median,
    timed,
)

apply_isa_from_argv()  # before TensorFlow and torch load: they read the ISA caps once

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torchvision's C extension must load before TensorFlow: the other order segfaults (torch 2.14.1 + TF 2.21).
try:
    import torch
    import torchvision
    import torchvision.models.detection  # noqa: F401
except ImportError:
    torch = torchvision = None
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER_PATH = REPO.parent / "shared" / "tools" / "torchvision_peer.py"
NUM_CLASSES = 81
CALIBRATION_SHAPE = (2, 256, 256, 3)  # like the peer's torch.rand(2, 3, 256, 256)


def set_tf_threads(cores):
    """Give TensorFlow ``cores`` intra- and inter-op threads; must run before TF executes any op."""
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)


# mrcnn is imported only after the thread settings: importing it must not start TF's runtime first.
def import_mrcnn():
    sys.path.insert(0, str(REPO))
    import keras

    import mrcnn
    from mrcnn.config import Config
    from mrcnn.data import mold_image
    from mrcnn.model import MaskRCNN, build_backbone

    return keras, mrcnn, Config, MaskRCNN, build_backbone, mold_image


def make_config(Config, size, depth, batch, train_bn=False, precision=None):
    """Matterport's COCO inference config (NUM_CLASSES 81, DETECTION_MIN_CONFIDENCE 0) at ``size``.

    precision: None (float32) or a Keras mixed policy name for MIXED_PRECISION (e.g. "mixed_bfloat16").
    """
    attrs = {
        "MIXED_PRECISION": precision,
        "NAME": "coco",
        "GPU_COUNT": 1,
        "IMAGES_PER_GPU": batch,
        "NUM_CLASSES": NUM_CLASSES,
        "BACKBONE": f"resnet{depth}",
        "IMAGE_RESIZE_MODE": "square",
        "IMAGE_MIN_DIM": size,
        "IMAGE_MAX_DIM": size,
        "PRE_NMS_LIMIT": 6000,
        "POST_NMS_ROIS_INFERENCE": 1000,
        "DETECTION_MAX_INSTANCES": 100,
        "DETECTION_MIN_CONFIDENCE": 0.0,
        "TRAIN_BN": train_bn,
    }
    return type("CocoInferenceConfig", (Config,), attrs)()


############################################################
#  Ours
############################################################


def zero_box_regressors(keras_model):
    """Zero the kernels and biases of ``rpn_bbox_pred`` (inside ``rpn_model``) and ``mrcnn_bbox_fc``."""
    for layer in (
        keras_model.get_layer("rpn_model").get_layer("rpn_bbox_pred"),
        keras_model.get_layer("mrcnn_bbox_fc"),
    ):
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def calibrate_backbone_bn(keras, model, config_bn, build_backbone, mold_image, rng):
    """Set every backbone BatchNorm's moving mean/variance to the statistics of one random batch.

    Keras' BN init (mean 0, variance 1) is the identity, so random ResNet activations grow through the
    residual stages (|P2| ~ 1e2 at R50 / 256 px) and saturate the class softmax. As the peer does with
    ``backbone.train(); backbone(batch)``, a copy of the backbone built with TRAIN_BN=True (so its BN
    follows ``training``) gets our weights, runs once with ``training=True`` and momentum 0 on a
    CALIBRATION_SHAPE batch of molded random uint8 pixels, and its BN statistics are copied back.
    Returns the number of BatchNorm layers calibrated.
    """
    source = model.keras_model
    image = keras.Input(shape=[None, None, CALIBRATION_SHAPE[-1]], name="input_image")
    twin = keras.Model(image, build_backbone(image, config_bn), name="bn_calibration")
    norms = [layer for layer in twin.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in twin.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    for layer in norms:
        layer.momentum = 0.0
    pixels = rng.integers(0, 256, CALIBRATION_SHAPE, dtype=np.uint8)
    twin(mold_image(pixels, model.config), training=True)
    for layer in norms:
        source.get_layer(layer.name).set_weights(layer.get_weights())
    return len(norms)


def check_detections(boxes, scores, classes, label):
    """Raise if any box or score is not finite; return counts, distinct classes and top score per image.

    boxes, scores, classes: one array per image ([N, 4], [N], [N]).
    """
    for box, score in zip(boxes, scores):
        if not (np.all(np.isfinite(box)) and np.all(np.isfinite(score))):
            raise RuntimeError(f"{label}: non-finite detections; the random network overflowed.")
    return {
        "detections_per_image": [int(len(score)) for score in scores],
        "distinct_classes_per_image": [int(len(np.unique(c))) for c in classes],
        "top_score_per_image": [float(np.max(score)) if len(score) else None for score in scores],
    }


def graph_function(keras_model, config, summarize=False):
    """The inference graph as a ``tf.function`` (same signature as detect's) returning numpy arrays.

    summarize: return one float sum per output instead of the outputs, so that timing a cut of the
    graph does not include copying its (large) feature maps out.
    """
    spec = [
        tf.TensorSpec([None, None, None, int(config.IMAGE_CHANNEL_COUNT)], tf.float32),
        tf.TensorSpec([None, int(config.IMAGE_META_SIZE)], tf.float32),
        tf.TensorSpec([None, None, 4], tf.float32),
    ]

    def call(images, metas, anchors):
        outputs = keras_model([images, metas, anchors], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.reduce_sum(tf.cast(o, tf.float32)) for o in outputs] if summarize else outputs

    function = tf.function(call, input_signature=spec, autograph=False)

    def run(images, metas, anchors):
        return [output.numpy() for output in function(images, metas, anchors)]

    return run


def count_graph_flops(keras_model, graph_args):
    """Floating-point operations of one call of ``keras_model`` on inputs shaped like ``graph_args``.

    Traces the model with fully static input shapes, freezes the variables into constants and sums
    TensorFlow's profiler counts (``float_operation``: 2 per multiply-add of convolutions and matmuls,
    plus elementwise ops with known shapes). Returns (total float ops, ops the profiler could not count).
    The graph is traced with ``mrcnn.kernels.disabled()``: the count is the architecture's arithmetic as
    direct convolutions, so FLOP/s derived from it are effective rates (the Winograd layers multiply less).
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from mrcnn import kernels

    function = tf.function(lambda a, b, c: keras_model([a, b, c], training=False), autograph=False)
    with kernels.disabled():
        concrete = function.get_concrete_function(*[tf.TensorSpec(a.shape, a.dtype) for a in graph_args])
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    uncounted = [
        op.type
        for op in graph.get_operations()
        if op.type in ("Conv2D", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput")
        and not op.outputs[0].shape.is_fully_defined()
    ]
    return profile.total_float_ops, uncounted


def matmul_peak(size=2048, runs=7):
    """This machine's float32 matmul throughput in TensorFlow (FLOP/s): median of ``runs`` size² products."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    product(a, b).numpy()
    seconds = median([timed(lambda: product(a, b).numpy())[0] for _ in range(runs)])
    return 2.0 * size**3 / seconds


STAGES = [
    ("ResNet C2..C5", ["res2c_out", "res3d_out", "res4f_out|res4w_out", "res5c_out"]),
    ("FPN P2..P6", ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"]),
    ("RPN head (5 levels)", ["rpn_class", "rpn_bbox"]),
    ("proposals (ProposalLayer)", ["ROI"]),
    ("box head (RoIAlign + 2 convs + fc)", ["mrcnn_class", "mrcnn_bbox"]),
    ("DetectionLayer", ["mrcnn_detection"]),
    ("mask head (RoIAlign + convs) + outputs", None),
]
"""Graph cuts timed by ``--stages``: (stage, output layers of the cut ending it; "a|b" = a or b)."""


def stage_cuts(keras, keras_model):
    """Prefix models of the inference graph, [(stage, model)] in graph order; the last is the whole graph."""
    names = {layer.name for layer in keras_model.layers}
    cuts = []
    for stage, outputs in STAGES:
        if outputs is None:
            cuts.append((stage, keras_model))
            continue
        layers = [next(n for n in alternatives.split("|") if n in names) for alternatives in outputs]
        cut = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in layers])
        cuts.append((stage, cut))
    return cuts


class OursBench:
    """Our model set up for timing: built, regressors zeroed, BN calibrated, warmed up and checked."""

    def __init__(self, args, images, mods):
        keras, _, Config, MaskRCNN, build_backbone, mold_image = mods
        keras.utils.set_random_seed(0)
        self.images = images
        self.config = make_config(
            Config,
            args.size,
            args.depth,
            args.batch,
            precision=None if args.precision == "float32" else args.precision,
        )
        self.model = MaskRCNN(
            mode="inference", config=self.config, model_dir=str(Path(args.model_dir).resolve())
        )
        zero_box_regressors(self.model.keras_model)
        self.calibrated = 0
        if not args.no_calibrate:
            config_bn = make_config(Config, args.size, args.depth, args.batch, train_bn=True)
            self.calibrated = calibrate_backbone_bn(
                keras, self.model, config_bn, build_backbone, mold_image, np.random.default_rng(1)
            )
        self.warmup_s, results = timed(self.model.detect, images)
        self.checks = check_detections(
            [r["rois"] for r in results],
            [r["scores"] for r in results],
            [r["class_ids"] for r in results],
            "ours",
        )
        self.molded, metas, self.windows = self.model.mold_inputs(images)
        anchors = self.model.get_anchors(self.molded[0].shape)
        anchors = np.broadcast_to(anchors, (len(self.molded),) + anchors.shape)
        self.graph_args = (tf.constant(self.molded), tf.constant(metas), tf.constant(anchors))
        self.graph = graph_function(self.model.keras_model, self.config)
        self.graph(*self.graph_args)  # warm-up (tracing)
        self.cuts = []
        if args.stages:
            tf.get_logger().setLevel("ERROR")  # each cut is a new tf.function: TF would warn of retracing
            for stage, cut in stage_cuts(keras, self.model.keras_model):
                self.cuts.append((stage, graph_function(cut, self.config, summarize=True)))
                self.cuts[-1][1](*self.graph_args)
        self.times = {"detect": [], "mold": [], "graph": [], "unmold": []}
        self.stage_times = {stage: [] for stage, _ in self.cuts}

    def _unmold_all(self, detections, mrcnn_mask):
        return [
            self.model.unmold_detections(
                detections[i], mrcnn_mask[i], self.images[i].shape, self.molded[i].shape, self.windows[i]
            )
            for i in range(len(self.images))
        ]

    def run(self):
        """One timed run: detect(), then its parts (mold, graph, unmold), then the graph cuts."""
        self.times["detect"].append(timed(self.model.detect, self.images)[0])
        self.times["mold"].append(timed(self.model.mold_inputs, self.images)[0])
        seconds, outputs = timed(self.graph, *self.graph_args)
        self.times["graph"].append(seconds)
        self.times["unmold"].append(timed(self._unmold_all, outputs[0], outputs[3])[0])
        for stage, run_cut in self.cuts:
            self.stage_times[stage].append(timed(run_cut, *self.graph_args)[0])

    def summary(self):
        t = {name: median(values) for name, values in self.times.items()}
        stages, previous = [], 0.0
        for stage, values in self.stage_times.items():
            total = median(values)
            stages.append(
                {"stage": stage, "cumulative_s": total, "stage_s": total - previous, "runs_s": values}
            )
            previous = total
        return {
            "backbone_bn_layers_calibrated": self.calibrated,
            "warmup_s": self.warmup_s,
            **{f"{name}_s": values for name, values in self.times.items()},
            **{f"{name}_median_s": value for name, value in t.items()},
            "detect_min_s": min(self.times["detect"]),
            "graph_min_s": min(self.times["graph"]),
            "post_processing_share": (t["mold"] + t["unmold"]) / t["detect"],
            **self.checks,
            "tf_threads": {
                "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            },
            "stages": stages,
        }


############################################################
#  Peer (torchvision)
############################################################


def replicated_peer_build(depth, size, num_classes):
    """torchvision_peer.build(depth, size, num_classes), for when the shared tool is absent.

    Up to 256 px the tool uses the shapes config's anchor sizes (8..128 px, one per level).
    """
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    def norm(channels):
        return torch.nn.BatchNorm2d(channels, momentum=None)

    backbone = resnet_fpn_backbone(
        backbone_name=f"resnet{depth}", weights=None, trainable_layers=5, norm_layer=norm
    )
    with torch.no_grad():
        backbone.train()
        backbone(torch.rand(2, 3, 256, 256))
        backbone.eval()
    anchors = {}
    if size <= 256:
        anchors["rpn_anchor_generator"] = AnchorGenerator(
            sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5
        )
    model = MaskRCNN(
        backbone,
        num_classes=num_classes,
        min_size=size,
        max_size=size,
        rpn_pre_nms_top_n_test=6000,
        rpn_post_nms_top_n_test=1000,
        box_score_thresh=0.0,
        box_detections_per_img=100,
        **anchors,
    )
    with torch.no_grad():
        for layer in (model.rpn.head.bbox_pred, model.roi_heads.box_predictor.bbox_pred):
            layer.weight.zero_()
            layer.bias.zero_()
    return model


def peer_builder():
    """(build function, where it came from): the shared tool beside the repository, else the replica."""
    if PEER_PATH.is_file():
        spec = importlib.util.spec_from_file_location("torchvision_peer", PEER_PATH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.build, str(PEER_PATH)
    return replicated_peer_build, "replicated in bench_inference.py (torchvision_peer.py not found)"


class StageTimer:
    """Wraps a callable and accumulates the seconds spent in it."""

    def __init__(self, fn):
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


class PeerBench:
    """torchvision's Mask R-CNN set up like torchvision_peer.py, warmed up and checked."""

    def __init__(self, args, images):
        torch.manual_seed(0)
        build, self.source = peer_builder()
        self.model = build(args.depth, args.size, NUM_CLASSES).eval()
        self.pre = self.model.transform.forward = StageTimer(self.model.transform.forward)
        self.post = self.model.transform.postprocess = StageTimer(self.model.transform.postprocess)
        self.tensors = [torch.from_numpy(image).permute(2, 0, 1).float().div(255.0) for image in images]
        with torch.inference_mode():
            self.warmup_s, outputs = timed(self.model, self.tensors)
        self.checks = check_detections(
            *[[output[key].numpy() for output in outputs] for key in ("boxes", "scores", "labels")],
            "torchvision",
        )
        self.pre.seconds = self.post.seconds = 0.0
        self.times = []

    def run(self):
        with torch.inference_mode():
            self.times.append(timed(self.model, self.tensors)[0])

    def summary(self):
        return {
            "build": self.source,
            "warmup_s": self.warmup_s,
            "model_s": self.times,
            "model_median_s": median(self.times),
            "model_min_s": min(self.times),
            "pre_post_share": (self.pre.seconds + self.post.seconds) / sum(self.times),
            **self.checks,
            "torch_threads": {
                "intra_op": torch.get_num_threads(),
                "inter_op": torch.get_num_interop_threads(),
            },
        }


############################################################
#  Report
############################################################


def table(report):
    """The result table as Markdown lines."""
    ours, peer = report["ours"], report.get("peer")
    s = report["settings"]
    head = f"R{s['depth']}-FPN, {s['size']} px, batch {s['batch']}, median of {s['runs']} runs"
    lines = [
        f"**{head}** (seconds per batch)",
        "",
        "| ours detect() | ours graph only | torchvision | ratio ours/torchvision "
        "| ours post-processing share | torchvision pre+post share |",
        "|---|---|---|---|---|---|",
    ]
    peer_s = f"{peer['model_median_s']:.3f}" if peer else "n/a"
    ratio = f"{ours['detect_median_s'] / peer['model_median_s']:.2f}" if peer else "n/a"
    peer_share = f"{100 * peer['pre_post_share']:.1f} %" if peer else "n/a"
    lines.append(
        f"| {ours['detect_median_s']:.3f} | {ours['graph_median_s']:.3f} | {peer_s} | {ratio} "
        f"| {100 * ours['post_processing_share']:.1f} % | {peer_share} |"
    )
    if report.get("flops"):
        f = report["flops"]
        lines += [
            "",
            f"Ours: {f['graph_flops_per_image'] / 1e9:.1f} GFLOP per image (TensorFlow profiler, "
            "convolutions counted as direct ones); "
            f"graph only at {f['achieved_flops'] / 1e9:.1f} GFLOP/s = "
            f"{100 * f['fraction_of_peak']:.0f} % of this machine's float32 matmul peak "
            f"({f['matmul_peak_flops'] / 1e9:.1f} GFLOP/s, 2048² TensorFlow matmul, same run).",
        ]
    if ours["stages"]:
        lines += [
            "",
            "Ours, graph stages (median seconds per batch):",
            "",
            "| stage | seconds | share |",
            "|---|---|---|",
        ]
        total = ours["stages"][-1]["cumulative_s"]
        lines += [
            f"| {st['stage']} | {st['stage_s']:.3f} | {100 * st['stage_s'] / total:.1f} % |"
            for st in ours["stages"]
        ]
    return lines


def markdown(report):
    m, ours, peer = report["machine"], report["ours"], report.get("peer")
    lines = [f"# Inference benchmark, CPU ({report['date']})", ""] + table(report) + [""]
    lines += [
        f"- Machine: {m['cpu']}, {m['cores_available']} cores available; load average at start "
        f"{m['loadavg_start']}, at end {report['loadavg_end']}.",
        isa_line(m),
        f"- Threads: TensorFlow intra {ours['tf_threads']['intra_op']} / inter "
        f"{ours['tf_threads']['inter_op']}"
        + (
            f"; torch intra {peer['torch_threads']['intra_op']} / inter {peer['torch_threads']['inter_op']}"
            if peer
            else ""
        )
        + ".",
        f"- Versions: python {m['python']}, tensorflow {m['tensorflow']}, keras {m['keras']}, "
        f"torch {m['torch']}, torchvision {m['torchvision']}, mrcnn {m['mrcnn']} "
        f"(commit {m['mrcnn_commit']}).",
        f"- Detections per image: ours {ours['detections_per_image']} (distinct classes "
        f"{ours['distinct_classes_per_image']}, top score {ours['top_score_per_image']})"
        + (
            f", torchvision {peer['detections_per_image']} (distinct classes "
            f"{peer['distinct_classes_per_image']}, top score {peer['top_score_per_image']})"
            if peer
            else ""
        )
        + ".",
        f"- Fastest run: ours detect() {ours['detect_min_s']:.3f} s, graph {ours['graph_min_s']:.3f} s"
        + (f", torchvision {peer['model_min_s']:.3f} s" if peer else "")
        + ".",
        f"- Ours: mold {ours['mold_median_s']:.3f} s, unmold {ours['unmold_median_s']:.3f} s, "
        f"warm-up (tracing) {ours['warmup_s']:.1f} s; backbone BN layers calibrated: "
        f"{ours['backbone_bn_layers_calibrated']}.",
    ]
    if peer:
        lines.append(f"- torchvision setup: {peer['build']}; warm-up {peer['warmup_s']:.1f} s.")
    if report.get("note"):
        lines.append(f"- Note: {report['note']}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(p)
    p.add_argument("--size", type=int, default=1024, help="square image side in pixels (multiple of 64)")
    p.add_argument("--depth", type=int, default=101, choices=[50, 101], help="ResNet depth")
    p.add_argument("--batch", type=int, default=1, help="images per batch (IMAGES_PER_GPU)")
    p.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up; the median is kept")
    p.add_argument("--json", help="write the full report (machine, settings, all timings) here")
    p.add_argument("--markdown", help="write the table and machine notes as Markdown here")
    p.add_argument("--note", default="", help="free text stored in the report (e.g. machine load)")
    p.add_argument("--stages", action="store_true", help="also time our graph stage by stage")
    p.add_argument("--no-peer", action="store_true", help="time ours only")
    p.add_argument(
        "--flops",
        action="store_true",
        help="count our graph's FLOPs and measure the matmul peak: achieved fraction of peak",
    )
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "mixed_bfloat16"],
        help="our compute precision (Config.MIXED_PRECISION); the peer stays float32",
    )
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep Keras' identity BN statistics in our backbone (see calibrate_backbone_bn)",
    )
    p.add_argument(
        "--model-dir",
        default=str(REPO / "benchmarks" / "logs"),
        help="MaskRCNN model_dir (inference writes nothing there)",
    )
    args = p.parse_args(argv)
    if args.size <= 0 or args.size % 64:
        p.error(f"--size must be a positive multiple of 64 (got {args.size}).")
    if args.batch < 1 or args.runs < 1:
        p.error("--batch and --runs must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    cores = core_count()
    set_tf_threads(cores)
    use_peer = not args.no_peer and torch is not None
    if not args.no_peer and torch is None:
        print(
            "torch/torchvision not installed: timing ours only. For the torchvision comparison: "
            'pip install -e ".[benchmark]"'
        )
    if use_peer:
        torch.set_num_threads(cores)
        torch.set_num_interop_threads(cores)
    mods = import_mrcnn()
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "note": args.note,
        "settings": {
            "size": args.size,
            "depth": args.depth,
            "batch": args.batch,
            "runs": args.runs,
            "precision": args.precision,
            "calibrated": not args.no_calibrate,
        },
        "machine": machine_info(cores),
    }
    print(
        f"{report['machine']['cpu']}, {cores} cores; TensorFlow threads intra/inter "
        f"{tf.config.threading.get_intra_op_parallelism_threads()}/"
        f"{tf.config.threading.get_inter_op_parallelism_threads()}"
        + (
            f"; torch threads intra/inter {torch.get_num_threads()}/{torch.get_num_interop_threads()}"
            if use_peer
            else ""
        ),
        flush=True,
    )

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.batch)]
    print("building and warming up ours ...", flush=True)
    benches = {"ours": OursBench(args, images, mods)}
    if use_peer:
        print("building and warming up torchvision ...", flush=True)
        benches["peer"] = PeerBench(args, images)
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs} ...", flush=True)
        for bench in benches.values():
            bench.run()
    report.update({name: bench.summary() for name, bench in benches.items()})
    if args.flops:
        print("counting FLOPs and measuring the matmul peak ...", flush=True)
        flops, uncounted = count_graph_flops(benches["ours"].model.keras_model, benches["ours"].graph_args)
        peak = matmul_peak()
        achieved = flops / report["ours"]["graph_median_s"]
        report["flops"] = {
            "graph_flops_per_batch": flops,
            "graph_flops_per_image": flops / args.batch,
            "uncounted_matmul_conv_ops": uncounted,
            "matmul_peak_flops": peak,
            "achieved_flops": achieved,
            "fraction_of_peak": achieved / peak,
        }
    report["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    for name, side in (("ours", report["ours"]), ("torchvision", report.get("peer"))):
        if side and any(count != 100 for count in side["detections_per_image"]):
            print(
                f"warning: {name} kept {side['detections_per_image']} detections, not 100 per image: "
                "the two sides do different work."
            )
    print("\n".join(table(report)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown(report))


if __name__ == "__main__":
    main()
