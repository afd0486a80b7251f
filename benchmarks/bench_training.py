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

Precision: ``--precision mixed_bfloat16`` builds ours under Keras' mixed bfloat16 policy
(``Config.MIXED_PRECISION``); ``--peer-precision bfloat16`` runs torchvision's forward pass under
``torch.autocast("cpu", dtype=torch.bfloat16)``. Both default to float32.

Usage: python benchmarks/bench_training.py [--preset shapes|balloon] [--depth 50] [--size N] [--batch N]
       [--rois N] [--steps 5] [--backbone resnet50|small] [--precision float32|mixed_bfloat16]
       [--peer-precision float32|bfloat16] [--json PATH] [--markdown PATH] [--note TEXT] [--no-peer]
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
from common import core_count, machine_info, median, timed

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
    ``TRAIN_BN = True`` and ``MIXED_PRECISION`` from ``args.precision``.
    """
    from mrcnn.config import Config

    attrs = {"IMAGES_PER_GPU": args.batch, "TRAIN_ROIS_PER_IMAGE": args.rois, "IMAGE_MIN_DIM": args.size,
             "IMAGE_MAX_DIM": args.size, "TRAIN_BN": True,
             "MIXED_PRECISION": None if args.precision == "float32" else args.precision}
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
        self.batches = batches
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
            "warmup_s": self.warmup_s, "step_s": self.times, "step_median_s": med,
            "step_min_s": min(self.times), "images_per_s": batch / med,
            "trainable_weights": self.trainable_weights,
            "loss_first": self.first_loss, "losses_last": {k: float(v) for k, v in self.logs.items()},
            "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                           "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        }


############################################################
#  Peer: torchvision
############################################################

def load_peer_build():
    """``build`` of the shared torchvision_peer.py beside the repository (FileNotFoundError if absent)."""
    if not PEER_PATH.is_file():
        raise FileNotFoundError(f"{PEER_PATH} not found: the torchvision peer needs the shared tool beside "
                                "the repository; run with --no-peer to time ours only.")
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
        targets.append({"boxes": torch.from_numpy(boxes.astype(np.float32)),
                        "labels": torch.from_numpy(class_ids.astype(np.int64)),
                        "masks": torch.from_numpy(masks)})
    return images, targets


class PeerBench:
    """The peer model in train mode with SGD; warmed up on batch 0, ``step(i)`` trains on batch i."""

    def __init__(self, args, dataset, extract_bboxes, count):
        torch.manual_seed(0)
        self.model = load_peer_build()(args.depth, args.size, PRESETS[args.preset]["num_classes"],
                                       args.rois).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=PEER_LEARNING_RATE, momentum=MOMENTUM)
        self.bfloat16 = args.peer_precision == "bfloat16"
        ids = dataset.image_ids
        self.batches = [peer_batch(dataset, [ids[(i * args.batch + k) % len(ids)] for k in range(args.batch)],
                                   extract_bboxes) for i in range(count)]
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
            "build": str(PEER_PATH), "warmup_s": self.warmup_s, "step_s": self.times, "step_median_s": med,
            "step_min_s": min(self.times), "images_per_s": batch / med,
            "loss_first": self.first_loss, "losses_last": self.last_losses,
            "torch_threads": {"intra_op": torch.get_num_threads(),
                              "inter_op": torch.get_num_interop_threads()},
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
    head = (f"ours {ours_net}{peer_net}, {preset}, {s['size']} px, batch {s['batch']}, "
            f"{s['rois']} RoIs/image, median of {s['steps']} steps")
    lines = [f"**{head}**", "",
             "| ours s/step | ours img/s | torchvision s/step | torchvision img/s "
             "| ratio ours/torchvision img/s | input batches/s (1 thread) | input ÷ our training steps/s |",
             "|---|---|---|---|---|---|---|"]
    peer_s = f"{peer['step_median_s']:.3f}" if peer else "n/a"
    peer_ips = f"{peer['images_per_s']:.2f}" if peer else "n/a"
    ratio = f"{report['ratio_ours_over_torchvision_img_s']:.2f}" if peer else "n/a"
    lines.append(f"| {ours['step_median_s']:.3f} | {ours['images_per_s']:.2f} | {peer_s} | {peer_ips} "
                 f"| {ratio} | {inp['batches_per_s']:.2f} | {inp['ratio_to_training_steps_per_s']:.1f} |")
    return lines


def markdown(report):
    m, s, ours, peer = report["machine"], report["settings"], report["ours"], report.get("peer")
    lines = [f"# Training benchmark, CPU ({report['date']})", ""] + table(report) + [""]
    start, end = (" / ".join(f"{x:.2f}" for x in load)
                  for load in (m["loadavg_start"], report["loadavg_end"]))
    lines += [f"- Machine: {m['cpu']}, {m['cores_available']} cores available; load average (1 / 5 / 15 min) "
              f"at start {start}, at end {end}.",
              f"- Threads: TensorFlow intra {ours['tf_threads']['intra_op']} / inter "
              f"{ours['tf_threads']['inter_op']}"
              + (f"; torch intra {peer['torch_threads']['intra_op']} / inter "
                 f"{peer['torch_threads']['inter_op']}" if peer else "") + ".",
              f"- Versions: python {m['python']}, tensorflow {m['tensorflow']}, keras {m['keras']}, "
              f"torch {m['torch']}, torchvision {m['torchvision']}, mrcnn {m['mrcnn']} "
              f"(commit {m['mrcnn_commit']}).",
              f"- Ours: config {s['config']} (TRAIN_BN True, every layer trainable: "
              f"{ours['trainable_weights']} weights), warm-up (tracing) {ours['warmup_s']:.1f} s, "
              f"fastest step {ours['step_min_s']:.3f} s, loss {ours['loss_first']:.3f} at warm-up, "
              f"{ours['losses_last']['loss']:.3f} after the last step.",
              f"- Input pipeline: median {report['input_pipeline']['batch_median_s']:.3f} s per batch of "
              f"{s['batch']} (MaskRCNNSequence.__getitem__, {report['input_pipeline']['batches']} batches)."]
    if peer:
        lines.append(f"- torchvision: {peer['build']}; warm-up {peer['warmup_s']:.1f} s, fastest step "
                     f"{peer['step_min_s']:.3f} s, loss {peer['loss_first']:.3f} at warm-up, "
                     f"{sum(peer['losses_last'].values()):.3f} after the last step.")
        if s["backbone"] == "small":
            lines.append("- The backbones differ (ours small, torchvision ResNet): the ratio is not like "
                         "for like.")
    if report.get("note"):
        lines.append(f"- Note: {report['note']}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="shapes", choices=sorted(PRESETS),
                   help="shapes: 128 px, batch 8, 32 RoIs; balloon: 512 px balloon-like, batch 2, 200 RoIs")
    p.add_argument("--depth", type=int, default=50, choices=[50, 101], help="ResNet depth")
    p.add_argument("--backbone", default="resnet50", choices=["resnet50", "small"],
                   help="ours: ResNet of --depth (resnet50) or the shapes sample's small backbone (small)")
    p.add_argument("--size", type=int, help="square image side in pixels, multiple of 64 (preset's)")
    p.add_argument("--batch", type=int, help="images per step, IMAGES_PER_GPU (preset's)")
    p.add_argument("--rois", type=int, help="sampled RoIs per image, TRAIN_ROIS_PER_IMAGE (preset's)")
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                   help="ours: Config.MIXED_PRECISION (default float32)")
    p.add_argument("--peer-precision", default="float32", choices=["float32", "bfloat16"],
                   help="torchvision: bfloat16 runs its forward pass under torch.autocast (default float32)")
    p.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up; the median is kept")
    p.add_argument("--input-batches", type=int, default=10,
                   help="batches timed for the input pipeline (at least --steps + 1 are built)")
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
    return args


def main(argv=None):
    args = parse_args(argv)
    cores = core_count()
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    use_peer = not args.no_peer and torch is not None
    if not args.no_peer and torch is None:
        print("torch/torchvision not installed: timing ours only. For the torchvision comparison install "
              "torch==2.14.1 torchvision==0.29.1 (or run with /root/bench-venv/bin/python).")
    if use_peer:
        torch.set_num_threads(cores)
        torch.set_num_interop_threads(cores)
    keras, mrcnn, MaskRCNN, MaskRCNNSequence, extract_bboxes, shapes = import_mrcnn()
    config = make_config(shapes, args)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "note": args.note,
              "settings": {"preset": args.preset, "precision": args.precision,
                           "peer_precision": args.peer_precision,
                           "depth": args.depth, "backbone": args.backbone, "size": args.size,
                           "batch": args.batch, "rois": args.rois, "steps": args.steps,
                           "config": type(config).__mro__[1].__name__, "dataset_images": DATASET_IMAGES,
                           "learning_rate": LEARNING_RATE, "peer_learning_rate": PEER_LEARNING_RATE,
                           "momentum": MOMENTUM},
              "machine": machine_info(cores)}
    print(f"{report['machine']['cpu']}, {cores} cores, load average {report['machine']['loadavg_start']}")
    print(f"threads: TensorFlow intra {tf.config.threading.get_intra_op_parallelism_threads()} / inter "
          f"{tf.config.threading.get_inter_op_parallelism_threads()}"
          + (f"; torch intra {torch.get_num_threads()} / inter {torch.get_num_interop_threads()}"
             if use_peer else ""))

    dataset = make_dataset(shapes, args)
    count = max(args.steps + 1, args.input_batches + 1)
    sequence = MaskRCNNSequence(dataset, config, steps=count, seed=0, workers=1)
    batches, input_s = build_batches(sequence, count)
    input_s = input_s[1:args.input_batches + 1]  # batch 0 warms up lazy imports and caches
    print(f"input pipeline: {len(input_s)} batches, median {median(input_s):.3f} s/batch")

    with tempfile.TemporaryDirectory() as model_dir:
        ours = OursBench(MaskRCNN, config, batches, model_dir)
        print(f"ours built and warmed up ({ours.warmup_s:.1f} s), loss {ours.first_loss:.3f}")
        peer = PeerBench(args, dataset, extract_bboxes, args.steps + 1) if use_peer else None
        if peer:
            print(f"torchvision built and warmed up ({peer.warmup_s:.1f} s), loss {peer.first_loss:.3f}")
        for step in range(1, args.steps + 1):
            ours.step(step)
            line = f"step {step}: ours {ours.times[-1]:.3f} s"
            if peer:
                peer.step(step)
                line += f", torchvision {peer.times[-1]:.3f} s"
            print(line)

    report["ours"] = ours.summary(args.batch)
    steps_per_s = 1.0 / report["ours"]["step_median_s"]
    input_med = median(input_s)
    report["input_pipeline"] = {"batches": len(input_s), "batch_s": input_s, "batch_median_s": input_med,
                                "batches_per_s": 1.0 / input_med,
                                "ratio_to_training_steps_per_s": 1.0 / input_med / steps_per_s}
    if peer:
        report["peer"] = peer.summary(args.batch)
        report["ratio_ours_over_torchvision_img_s"] = (report["ours"]["images_per_s"]
                                                       / report["peer"]["images_per_s"])
    report["loadavg_end"] = list(os.getloadavg())
    finals = {"ours": report["ours"]["losses_last"]["loss"]}
    if peer:
        finals["torchvision"] = sum(report["peer"]["losses_last"].values())
    for name, value in finals.items():
        if not np.isfinite(value):
            print(f"WARNING: {name} loss is not finite ({value}); the timings may not reflect normal "
                  "training.")

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
