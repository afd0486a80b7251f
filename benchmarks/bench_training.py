"""Training benchmark: mrcnn's training step against torchvision's Mask R-CNN, same process, CPU.

Both train from scratch on the synthetic shapes dataset (``samples/shapes``: 1-4 squares, circles and
triangles per ``size`` x ``size`` image, 3 classes + background), batch ``--batch``, ``--rois`` sampled
RoIs per image, every layer trainable, BatchNorm trained (ours: ``TRAIN_BN = True``).

Ours: ``MaskRCNN(mode="training")`` with ShapesConfig (anchor scales 8..128, ``IMAGES_PER_GPU = batch``,
``TRAIN_ROIS_PER_IMAGE = rois``, ``BACKBONE = resnet{depth}``) or, with ``--backbone small``,
ShapesFastConfig (the 11-conv ``small_backbone``, 64-channel pyramid, fewer proposals). Batches are
prebuilt with ``MaskRCNNSequence``; ``set_trainable(".*")``, ``compile(0.01, 0.9)``, then each step is
one ``keras_model.train_on_batch(inputs)``.

Input pipeline: ``MaskRCNNSequence.__getitem__`` alone, single thread (building the prebuilt batches is
what is timed). Its batches/s divided by our training steps/s says how many times faster than training
one input thread is.

Peer: torchvision's Mask R-CNN from ``shared/tools/torchvision_peer.py`` (``build(depth, size, 4, rois)``:
ResNet-{50,101}-FPN, BatchNorm trained, anchors 8..128 up to 256 px) in ``train()`` mode, SGD with the
tool's learning rate 0.001 and momentum 0.9. One step = forward with targets, sum of the losses, backward,
optimizer step, on the same shapes images (float [0, 1]) with their boxes, labels and full-size masks.

Each side is built and warmed up (one step: tracing, allocation); then the ``--steps`` timed steps
alternate ours / peer so that a change in machine load (the machine may be shared) hits both alike.
Reported: median seconds per step and images per second for each, the ratio ours / torchvision in
images/s (> 1: ours is faster), and the input pipeline's batches/s and its ratio to our steps/s.

torch is optional: without it (or with ``--no-peer``) only ours is timed.
Presets (``--preset``): ``shapes`` (default above: 128 px, batch 8, 32 RoIs, 3 classes, anchors 8..128) and
``balloon``, a 512 px balloon-like config: batch 2, 200 RoIs per image (Matterport's TRAIN_ROIS_PER_IMAGE),
1 class, Matterport's default anchors (32..512) and proposal counts, on synthetic images of 1-3 filled
ellipses ("balloons") over a noisy sky gradient (``BalloonLikeDataset``). ``--size``, ``--batch`` and
``--rois`` override a preset.

RoI sampling: both sides sample ``--rois`` RoIs per image with at most ``int(rois * ratio)`` positives,
``ratio`` = ``--roi-positive-ratio`` (default 0.33, Matterport's ROI_POSITIVE_RATIO and the shapes sample's;
ours: ``ROI_POSITIVE_RATIO``, torchvision: ``roi_heads.fg_bg_sampler.positive_fraction``, whose default
is 0.25). The mask heads train on the positives, so this sets their work.

Warm training: ``--warm-steps N`` trains each side N untimed steps (alternating) before the timed ones.
From random weights the first steps are atypical: ours finds few positive RoIs until its RPN learns
(Matterport samples RoIs from the proposals only), torchvision adds the ground-truth boxes to its
proposals and fills its positive quota at once. Timings after a few dozen steps reflect training.

Precision: ``--precision mixed_bfloat16`` builds ours under Keras' mixed bfloat16 policy
(``Config.MIXED_PRECISION``); ``--peer-precision bfloat16`` runs torchvision's forward pass under
``torch.autocast("cpu", dtype=torch.bfloat16)``. Both default to float32.

Usage: python benchmarks/bench_training.py [--preset shapes|balloon] [--depth 50] [--size N] [--batch N]
       [--rois N] [--roi-positive-ratio 0.33] [--warm-steps 0] [--steps 5] [--backbone resnet50|small]
       [--precision float32|mixed_bfloat16] [--peer-precision float32|bfloat16] [--flops] [--json PATH]
       [--markdown PATH] [--note TEXT] [--no-peer]
"""

import argparse
import datetime
import importlib.util
import json
import os
import sys
import tempfile
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
PRESETS = {  # size, batch, RoIs per image, classes including background
    "shapes": {"size": 128, "batch": 8, "rois": 32, "num_classes": 4},
    "balloon": {"size": 512, "batch": 2, "rois": 200, "num_classes": 2},
}
DATASET_IMAGES = 64
LEARNING_RATE, MOMENTUM = 0.01, 0.9  # ours: compile(0.01, 0.9), the shapes sample's rate, gradient clipping
PEER_LEARNING_RATE = 0.001  # torchvision_peer.py's train loop (no gradient clipping there)


# mrcnn is imported only after the thread settings: importing it must not start TF's runtime first.
def import_mrcnn():
    sys.path.insert(0, str(REPO))
    import keras

    import mrcnn
    from mrcnn.data import MaskRCNNSequence
    from mrcnn.model import MaskRCNN
    from mrcnn.utils import extract_bboxes
    from samples.shapes import shapes

    return keras, mrcnn, MaskRCNN, MaskRCNNSequence, extract_bboxes, shapes


def make_config(shapes, args):
    """The benchmark's Config: ShapesConfig / ShapesFastConfig (shapes) or a balloon-like Config (balloon).

    Both at ``args.size`` px, ``IMAGES_PER_GPU = args.batch``, ``TRAIN_ROIS_PER_IMAGE = args.rois``,
    ``ROI_POSITIVE_RATIO = args.roi_positive_ratio``, ``TRAIN_BN = True`` and ``MIXED_PRECISION`` from
    ``args.precision``.
    """
    from mrcnn.config import Config

    attrs = {
        "IMAGES_PER_GPU": args.batch,
        "TRAIN_ROIS_PER_IMAGE": args.rois,
        "ROI_POSITIVE_RATIO": args.roi_positive_ratio,
        "IMAGE_MIN_DIM": args.size,
        "IMAGE_MAX_DIM": args.size,
        "TRAIN_BN": True,
        "MIXED_PRECISION": None if args.precision == "float32" else args.precision,
    }
    if args.preset == "balloon":
        base = Config
        attrs.update(NAME="balloon_like", NUM_CLASSES=PRESETS["balloon"]["num_classes"])
    else:
        base = shapes.ShapesFastConfig if args.backbone == "small" else shapes.ShapesConfig
    if args.backbone != "small":
        attrs["BACKBONE"] = f"resnet{args.depth}"
    return type("BenchTrainingConfig", (base,), attrs)()


def make_dataset(shapes, args):
    """The prepared training images: shapes (``ShapesDataset``) or ``BalloonLikeDataset``, seed 0."""
    if args.preset == "balloon":
        from balloon_like import BalloonLikeDataset  # imports mrcnn: only after the thread settings

        dataset = BalloonLikeDataset()
        dataset.load_balloons(DATASET_IMAGES, args.size, args.size, seed=0)
    else:
        dataset = shapes.ShapesDataset()
        dataset.load_shapes(DATASET_IMAGES, args.size, args.size, seed=0)
    dataset.prepare()
    return dataset


############################################################
#  Input pipeline and ours
############################################################


def build_batches(sequence, count):
    """The first ``count`` batches of ``sequence`` and the seconds each ``__getitem__`` took."""
    batches, seconds = [], []
    for index in range(count):
        elapsed, item = timed(sequence.__getitem__, index)
        batches.append(item[0])
        seconds.append(elapsed)
    return batches, seconds


class OursBench:
    """mrcnn's training model, compiled and warmed up on batch 0; ``step(i)`` trains on batch i."""

    def __init__(self, MaskRCNN, config, batches, model_dir):
        import keras

        self.batches = batches
        keras.utils.set_random_seed(0)  # same initial weights and RoI samples every run, like the peer's seed
        self.model = MaskRCNN(mode="training", config=config, model_dir=model_dir)
        self.model.set_trainable(".*", verbose=0)
        self.model.compile(LEARNING_RATE, MOMENTUM)
        self.trainable_weights = len(self.model.keras_model.trainable_weights)
        self.warmup_s, logs = timed(self._train, 0)
        self.first_loss = float(logs["loss"])
        self.times, self.logs = [], logs

    def _train(self, index):
        return self.model.keras_model.train_on_batch(self.batches[index], return_dict=True)

    def step(self, index):
        elapsed, self.logs = timed(self._train, index)
        self.times.append(elapsed)

    def summary(self, batch):
        med = median(self.times)
        return {
            "warmup_s": self.warmup_s,
            "step_s": self.times,
            "step_median_s": med,
            "step_min_s": min(self.times),
            "images_per_s": batch / med,
            "trainable_weights": self.trainable_weights,
            "loss_first": self.first_loss,
            "losses_last": {k: float(v) for k, v in self.logs.items()},
            "tf_threads": {
                "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            },
        }


def layer_flops(layer, inputs, outputs):
    """2 x multiply-adds of one call of a Conv2D / Conv2DTranspose / Dense layer (0 for other layers)."""
    import keras

    kernel = layer.kernel.shape
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel meets the whole kernel
        return 2 * int(np.prod(inputs.shape[:-1])) * int(np.prod(kernel))
    if isinstance(layer, keras.layers.Conv2D):  # every output pixel: kh * kw * C_in / groups MACs per filter
        return 2 * int(np.prod(outputs.shape[:-1])) * int(np.prod(kernel))
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(np.prod(inputs.shape[:-1])) * int(np.prod(kernel))
    return 0


def count_training_flops(keras_model, config, inputs):
    """Floating-point operations of one training step of ours on ``inputs``, counted per layer.

    Runs the training graph once eagerly and records, for every Conv2D, Conv2DTranspose and Dense layer
    (including the RoI heads' and the nested RPN model's), 2 x its multiply-adds at the real shapes (the
    mask head's row count is the batch's positive RoIs of this call). A training step does each of these
    three times (forward, input gradient, weight gradient) except the first convolution, whose input (the
    image) needs no gradient, and the RPN's shared convolution when its backward pass is the sparse one: its
    two gradients are counted at the positions that hold a sampled anchor (``input_rpn_match`` nonzero),
    the only ones its backward pass visits. Returns (training FLOPs, forward FLOPs by stage, positive RoIs
    in this call). Elementwise work (BatchNorm, activations, the optimizer) is not counted.
    """
    import keras

    from mrcnn import kernels

    stages = {"backbone": 0, "fpn": 0, "rpn": 0, "box head": 0, "mask head": 0}
    first_conv = sparse_forward = 0
    layers = [
        layer
        for layer in keras_model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense))
    ]
    originals = {}

    def recorder(layer):
        call = layer.call

        def recording_call(x, *args, **kwargs):
            nonlocal first_conv, sparse_forward
            y = call(x, *args, **kwargs)
            flops = layer_flops(layer, x, y)
            if kernels.uses_sparse_gradient(layer):
                sparse_forward += flops
            name = layer.name
            stage = (
                "mask head"
                if name.startswith("mrcnn_mask")
                else "box head"
                if name.startswith(("mrcnn_class", "mrcnn_bbox"))
                else "fpn"
                if name.startswith("fpn_")
                else "rpn"
                if name.startswith("rpn_")
                else "backbone"
            )
            stages[stage] += flops
            if first_conv == 0:  # the graph runs its layers in order: the first is the image's conv
                first_conv = flops
            return y

        return recording_call

    for layer in layers:
        originals[layer] = layer.call
        layer.call = recorder(layer)
    try:
        outputs = keras_model(inputs, training=True)
    finally:
        for layer, call in originals.items():
            layer.call = call
    positives = (
        int(outputs[keras_model.output_names.index("mrcnn_mask")].shape[1])
        if "mrcnn_mask" in keras_model.output_names
        else None
    )
    skipped_backward = 2 * sparse_forward * (1.0 - active_anchor_positions(keras_model, config, inputs))
    return 3 * sum(stages.values()) - first_conv - skipped_backward, stages, positives


def active_anchor_positions(keras_model, config, inputs):
    """Share of the RPN's feature-map positions (all levels and images) holding a sampled anchor."""
    rpn_match = np.asarray(inputs[[t.name for t in keras_model.inputs].index("input_rpn_match")])
    anchors_per_position = len(config.RPN_ANCHOR_RATIOS)
    sampled = rpn_match.reshape(rpn_match.shape[0], -1, anchors_per_position) != 0
    return float(sampled.any(axis=-1).mean())


def conv_throughput(runs=7):
    """FLOP/s of a mask-head-like float32 convolution training step in TensorFlow on this machine.

    3x3, 256 -> 256 channels, 32 inputs of 14x14 (``same`` padding): forward, input and weight
    gradients, median of ``runs``. The reference for the fraction of the machine a training step uses.
    """
    x = tf.random.normal([32, 14, 14, 256])
    kernel = tf.Variable(tf.random.normal([3, 3, 256, 256]) * 0.02)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, kernel])

    step()
    seconds = median([timed(step)[0] for _ in range(runs)])
    return 3 * 2.0 * 32 * 14 * 14 * 256 * 256 * 9 / seconds


def count_peer_flops(peer):
    """torch's FlopCounterMode count of one peer training step (forward and backward) on batch 0."""
    from torch.utils.flop_counter import FlopCounterMode

    images, targets = peer.batches[0]
    counter = FlopCounterMode(display=False)
    with counter:
        losses = peer.model(images, targets)
        sum(losses.values()).backward()
    peer.optimizer.zero_grad()
    return counter.get_total_flops()


############################################################
#  Peer: torchvision
############################################################


def load_peer_build():
    """``build`` of the shared torchvision_peer.py beside the repository (FileNotFoundError if absent)."""
    if not PEER_PATH.is_file():
        raise FileNotFoundError(
            f"{PEER_PATH} not found: the torchvision peer needs the shared tool beside "
            "the repository; run with --no-peer to time ours only."
        )
    spec = importlib.util.spec_from_file_location("torchvision_peer", PEER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def peer_batch(dataset, image_ids, extract_bboxes):
    """torchvision inputs for shapes images: float [3, H, W] tensors in [0, 1] and target dicts.

    Targets: boxes float [N, 4] as (x1, y1, x2, y2) pixels (exclusive x2/y2, from the masks), labels
    int64 [N] (dataset class ids, 1..3), masks uint8 [N, H, W].
    """
    images, targets = [], []
    for image_id in image_ids:
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        boxes = extract_bboxes(masks)[:, [1, 0, 3, 2]]  # (y1, x1, y2, x2) -> (x1, y1, x2, y2)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float().div(255.0))
        masks = np.ascontiguousarray(masks.transpose(2, 0, 1), dtype=np.uint8)
        targets.append(
            {
                "boxes": torch.from_numpy(boxes.astype(np.float32)),
                "labels": torch.from_numpy(class_ids.astype(np.int64)),
                "masks": torch.from_numpy(masks),
            }
        )
    return images, targets


class PeerBench:
    """The peer model in train mode with SGD; warmed up on batch 0, ``step(i)`` trains on batch i."""

    def __init__(self, args, dataset, extract_bboxes, count):
        torch.manual_seed(0)
        self.model = load_peer_build()(
            args.depth, args.size, PRESETS[args.preset]["num_classes"], args.rois
        ).train()
        self.model.roi_heads.fg_bg_sampler.positive_fraction = args.roi_positive_ratio
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=PEER_LEARNING_RATE, momentum=MOMENTUM)
        self.bfloat16 = args.peer_precision == "bfloat16"
        ids = dataset.image_ids
        self.batches = [
            peer_batch(
                dataset, [ids[(i * args.batch + k) % len(ids)] for k in range(args.batch)], extract_bboxes
            )
            for i in range(count)
        ]
        self.warmup_s, self.first_loss = timed(self._train, 0)
        self.times = []

    def _train(self, index):
        images, targets = self.batches[index]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            losses = self.model(images, targets)
        loss = sum(losses.values())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.last_losses = {name: float(value.detach()) for name, value in losses.items()}
        return float(loss.detach())

    def step(self, index):
        self.times.append(timed(self._train, index)[0])

    def summary(self, batch):
        med = median(self.times)
        return {
            "build": str(PEER_PATH),
            "warmup_s": self.warmup_s,
            "step_s": self.times,
            "step_median_s": med,
            "step_min_s": min(self.times),
            "images_per_s": batch / med,
            "loss_first": self.first_loss,
            "losses_last": self.last_losses,
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
    s, ours, peer, inp = report["settings"], report["ours"], report.get("peer"), report["input_pipeline"]
    ours_net = "small backbone" if s["backbone"] == "small" else f"R{s['depth']}-FPN"
    ours_net += f" {s.get('precision', 'float32')}"
    peer_net = f", torchvision R{s['depth']}-FPN {s.get('peer_precision', 'float32')}" if peer else ""
    preset = "balloon-like" if s.get("preset") == "balloon" else "shapes"
    head = (
        f"ours {ours_net}{peer_net}, {preset}, {s['size']} px, batch {s['batch']}, "
        f"{s['rois']} RoIs/image (positive ratio {s.get('roi_positive_ratio', 0.33)} both), "
        f"median of {s['steps']} steps after {s.get('warm_steps', 0)} warm training steps"
    )
    lines = [
        f"**{head}**",
        "",
        "| ours s/step | ours img/s | torchvision s/step | torchvision img/s "
        "| ratio ours/torchvision img/s | input batches/s (1 thread) | input ÷ our training steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    peer_s = f"{peer['step_median_s']:.3f}" if peer else "n/a"
    peer_ips = f"{peer['images_per_s']:.2f}" if peer else "n/a"
    ratio = f"{report['ratio_ours_over_torchvision_img_s']:.2f}" if peer else "n/a"
    lines.append(
        f"| {ours['step_median_s']:.3f} | {ours['images_per_s']:.2f} | {peer_s} | {peer_ips} "
        f"| {ratio} | {inp['batches_per_s']:.2f} | {inp['ratio_to_training_steps_per_s']:.1f} |"
    )
    if report.get("flops"):
        f = report["flops"]
        text = (
            f"Training FLOPs per step (convolutions and matmuls, counted as direct convolutions: the "
            f"Winograd layers multiply less, so rates are effective ones): ours "
            f"{f['ours_training_flops_per_step'] / 1e9:.0f} GFLOP (positive RoIs "
            f"{', '.join(str(p) for p in f['ours_positive_rois'])}) at "
            f"{f['ours_flops_per_s'] / 1e9:.0f} GFLOP/s"
        )
        if "peer_training_flops_per_step" in f:
            text += (
                f"; torchvision {f['peer_training_flops_per_step'] / 1e9:.0f} GFLOP (torch's "
                f"FlopCounterMode, batch 0) at {f['peer_flops_per_s'] / 1e9:.0f} GFLOP/s"
            )
        text += (
            f". A mask-head-like 3x3 convolution's training step runs at "
            f"{f['conv_throughput_flops_per_s'] / 1e9:.0f} GFLOP/s here: ours uses "
            f"{100 * f['ours_fraction_of_conv_throughput']:.0f}% of it"
        )
        if "peer_fraction_of_conv_throughput" in f:
            text += f", torchvision {100 * f['peer_fraction_of_conv_throughput']:.0f}%"
        lines += ["", text + "."]
    return lines


def markdown(report):
    m, s, ours, peer = report["machine"], report["settings"], report["ours"], report.get("peer")
    lines = [f"# Training benchmark, CPU ({report['date']})", ""] + table(report) + [""]
    start, end = (
        " / ".join(f"{x:.2f}" for x in load) for load in (m["loadavg_start"], report["loadavg_end"])
    )
    lines += [
        f"- Machine: {m['cpu']}, {m['cores_available']} cores available; load average (1 / 5 / 15 min) "
        f"at start {start}, at end {end}.",
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
        f"- Ours: config {s['config']} (TRAIN_BN True, every layer trainable: "
        f"{ours['trainable_weights']} weights), warm-up (tracing) {ours['warmup_s']:.1f} s, "
        f"fastest step {ours['step_min_s']:.3f} s, loss {ours['loss_first']:.3f} at warm-up, "
        f"{ours['losses_last']['loss']:.3f} after the last step.",
        f"- Input pipeline: median {report['input_pipeline']['batch_median_s']:.3f} s per batch of "
        f"{s['batch']} (MaskRCNNSequence.__getitem__, {report['input_pipeline']['batches']} batches).",
    ]
    if peer:
        lines.append(
            f"- torchvision: {peer['build']}; warm-up {peer['warmup_s']:.1f} s, fastest step "
            f"{peer['step_min_s']:.3f} s, loss {peer['loss_first']:.3f} at warm-up, "
            f"{sum(peer['losses_last'].values()):.3f} after the last step."
        )
        if s["backbone"] == "small":
            lines.append(
                "- The backbones differ (ours small, torchvision ResNet): the ratio is not like for like."
            )
    if report.get("note"):
        lines.append(f"- Note: {report['note']}")
    return "\n".join(lines) + "\n"


def flops_report(args, ours, peer, timed_from, ours_step_s, peer_step_s):
    """FLOPs per training step of each side (ours: mean over the timed batches' counts, 3 at most), the
    FLOP/s they imply at the median step times, and this machine's convolution throughput for scale."""
    print("counting training FLOPs and measuring the convolution throughput ...", flush=True)
    indices = list(range(timed_from, timed_from + args.steps))[-3:]
    counts = [
        count_training_flops(ours.model.keras_model, ours.model.config, ours.batches[i]) for i in indices
    ]
    flops = float(np.mean([c[0] for c in counts]))
    forward = {stage: float(np.mean([c[1][stage] for c in counts])) for stage in counts[0][1]}
    result = {
        "ours_training_flops_per_step": flops,
        "ours_forward_flops_by_stage": forward,
        "ours_positive_rois": [c[2] for c in counts],
        "ours_flops_per_s": flops / ours_step_s,
        "conv_throughput_flops_per_s": conv_throughput(),
    }
    result["ours_fraction_of_conv_throughput"] = (
        result["ours_flops_per_s"] / result["conv_throughput_flops_per_s"]
    )
    if peer:
        result["peer_training_flops_per_step"] = float(count_peer_flops(peer))
        result["peer_flops_per_s"] = result["peer_training_flops_per_step"] / peer_step_s
        result["peer_fraction_of_conv_throughput"] = (
            result["peer_flops_per_s"] / result["conv_throughput_flops_per_s"]
        )
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(p)
    p.add_argument(
        "--preset",
        default="shapes",
        choices=sorted(PRESETS),
        help="shapes: 128 px, batch 8, 32 RoIs; balloon: 512 px balloon-like, batch 2, 200 RoIs",
    )
    p.add_argument("--depth", type=int, default=50, choices=[50, 101], help="ResNet depth")
    p.add_argument(
        "--backbone",
        default="resnet50",
        choices=["resnet50", "small"],
        help="ours: ResNet of --depth (resnet50) or the shapes sample's small backbone (small)",
    )
    p.add_argument("--size", type=int, help="square image side in pixels, multiple of 64 (preset's)")
    p.add_argument("--batch", type=int, help="images per step, IMAGES_PER_GPU (preset's)")
    p.add_argument("--rois", type=int, help="sampled RoIs per image, TRAIN_ROIS_PER_IMAGE (preset's)")
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "mixed_bfloat16"],
        help="ours: Config.MIXED_PRECISION (default float32)",
    )
    p.add_argument(
        "--peer-precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="torchvision: bfloat16 runs its forward pass under torch.autocast (default float32)",
    )
    p.add_argument(
        "--roi-positive-ratio",
        type=float,
        default=0.33,
        help="both sides: at most int(rois * ratio) positive RoIs per image (default 0.33, "
        "Matterport's ROI_POSITIVE_RATIO; torchvision's default is 0.25)",
    )
    p.add_argument(
        "--warm-steps",
        type=int,
        default=0,
        help="untimed training steps of each side before the timed ones (default 0)",
    )
    p.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up; the median is kept")
    p.add_argument(
        "--input-batches",
        type=int,
        default=10,
        help="batches timed for the input pipeline (at least --steps + 1 are built)",
    )
    p.add_argument(
        "--flops",
        action="store_true",
        help="count both sides' training FLOPs per step and measure this machine's convolution "
        "throughput: the fraction of the machine each side's step uses",
    )
    p.add_argument("--json", help="write the full report (machine, settings, all timings) here")
    p.add_argument("--markdown", help="write the table and machine notes as Markdown here")
    p.add_argument("--note", default="", help="free text stored in the report (e.g. machine load)")
    p.add_argument("--no-peer", action="store_true", help="time ours only")
    args = p.parse_args(argv)
    for name in ("size", "batch", "rois"):
        if getattr(args, name) is None:
            setattr(args, name, PRESETS[args.preset][name])
    if args.preset == "balloon" and args.backbone == "small":
        p.error("--backbone small is the shapes sample's backbone: use it with --preset shapes.")
    if args.size <= 0 or args.size % 64:
        p.error(f"--size must be a positive multiple of 64 (got {args.size}).")
    if min(args.batch, args.rois, args.steps, args.input_batches) < 1:
        p.error("--batch, --rois, --steps and --input-batches must be at least 1.")
    if args.warm_steps < 0:
        p.error(f"--warm-steps must be >= 0 (got {args.warm_steps}).")
    if not 0 < args.roi_positive_ratio <= 1:
        p.error(f"--roi-positive-ratio must be in (0, 1] (got {args.roi_positive_ratio}).")
    return args


def main(argv=None):
    args = parse_args(argv)
    cores = core_count()
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    use_peer = not args.no_peer and torch is not None
    if not args.no_peer and torch is None:
        print(
            "torch/torchvision not installed: timing ours only. For the torchvision comparison install "
            "torch==2.14.1 torchvision==0.29.1 (or run with /root/bench-venv/bin/python)."
        )
    if use_peer:
        torch.set_num_threads(cores)
        torch.set_num_interop_threads(cores)
    keras, mrcnn, MaskRCNN, MaskRCNNSequence, extract_bboxes, shapes = import_mrcnn()
    config = make_config(shapes, args)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "note": args.note,
        "settings": {
            "preset": args.preset,
            "precision": args.precision,
            "peer_precision": args.peer_precision,
            "depth": args.depth,
            "backbone": args.backbone,
            "size": args.size,
            "batch": args.batch,
            "rois": args.rois,
            "steps": args.steps,
            "warm_steps": args.warm_steps,
            "roi_positive_ratio": args.roi_positive_ratio,
            "config": type(config).__mro__[1].__name__,
            "dataset_images": DATASET_IMAGES,
            "learning_rate": LEARNING_RATE,
            "peer_learning_rate": PEER_LEARNING_RATE,
            "momentum": MOMENTUM,
        },
        "machine": machine_info(cores),
    }
    print(f"{report['machine']['cpu']}, {cores} cores, load average {report['machine']['loadavg_start']}")
    print(
        f"threads: TensorFlow intra {tf.config.threading.get_intra_op_parallelism_threads()} / inter "
        f"{tf.config.threading.get_inter_op_parallelism_threads()}"
        + (
            f"; torch intra {torch.get_num_threads()} / inter {torch.get_num_interop_threads()}"
            if use_peer
            else ""
        )
    )

    dataset = make_dataset(shapes, args)
    timed_from = 1 + args.warm_steps  # batch 0 warms up (tracing), then the warm training steps
    count = max(timed_from + args.steps, args.input_batches + 1)
    sequence = MaskRCNNSequence(dataset, config, steps=count, seed=0, workers=1)
    batches, input_s = build_batches(sequence, count)
    input_s = input_s[1 : args.input_batches + 1]  # batch 0 warms up lazy imports and caches
    print(f"input pipeline: {len(input_s)} batches, median {median(input_s):.3f} s/batch")

    with tempfile.TemporaryDirectory() as model_dir:
        ours = OursBench(MaskRCNN, config, batches, model_dir)
        print(f"ours built and warmed up ({ours.warmup_s:.1f} s), loss {ours.first_loss:.3f}")
        peer = PeerBench(args, dataset, extract_bboxes, timed_from + args.steps) if use_peer else None
        if peer:
            print(f"torchvision built and warmed up ({peer.warmup_s:.1f} s), loss {peer.first_loss:.3f}")
        for step in range(1, timed_from):
            ours.step(step)
            if peer:
                peer.step(step)
            if step % 10 == 0 or step == timed_from - 1:
                print(f"warm training: {step}/{args.warm_steps} steps", flush=True)
        ours.times.clear()
        if peer:
            peer.times.clear()
        for step in range(timed_from, timed_from + args.steps):
            ours.step(step)
            line = f"step {step - timed_from + 1}: ours {ours.times[-1]:.3f} s"
            if peer:
                peer.step(step)
                line += f", torchvision {peer.times[-1]:.3f} s"
            print(line)

    report["ours"] = ours.summary(args.batch)
    if args.flops:
        report["flops"] = flops_report(
            args,
            ours,
            peer,
            timed_from,
            report["ours"]["step_median_s"],
            peer.summary(args.batch)["step_median_s"] if peer else None,
        )
    steps_per_s = 1.0 / report["ours"]["step_median_s"]
    input_med = median(input_s)
    report["input_pipeline"] = {
        "batches": len(input_s),
        "batch_s": input_s,
        "batch_median_s": input_med,
        "batches_per_s": 1.0 / input_med,
        "ratio_to_training_steps_per_s": 1.0 / input_med / steps_per_s,
    }
    if peer:
        report["peer"] = peer.summary(args.batch)
        report["ratio_ours_over_torchvision_img_s"] = (
            report["ours"]["images_per_s"] / report["peer"]["images_per_s"]
        )
    report["loadavg_end"] = list(os.getloadavg())
    finals = {"ours": report["ours"]["losses_last"]["loss"]}
    if peer:
        finals["torchvision"] = sum(report["peer"]["losses_last"].values())
    for name, value in finals.items():
        if not np.isfinite(value):
            print(
                f"WARNING: {name} loss is not finite ({value}); the timings may not reflect normal training."
            )

    print()
    print("\n".join(table(report)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
