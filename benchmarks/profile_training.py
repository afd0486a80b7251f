"""Where a training step's time goes, stage by stage, forward and backward, for ours and torchvision.

Same presets, configs, batches and ISA caps as ``bench_training.py``. Ours: TensorFlow's profiler traces
``--steps`` training steps after ``--warm-steps``; every TensorFlow op's own time (its duration minus the
ops nested in it) is summed by the Keras layer that created it (``gradient_tape/...`` ops are the
backward pass) and the layers are grouped into stages. torchvision: torch's profiler, with each stage
module's forward inside a named range; a forward op's own time goes to its innermost stage, a backward
function's time to the stage of the forward op it differentiates (same autograd sequence number).

Ops that run side by side on TensorFlow's two inter-op threads are both counted, so ours' stage sum can
exceed the step time; compare shares, and times only roughly (tracing also adds a little).

    python benchmarks/profile_training.py --preset balloon --isa avx2 --markdown results/x.md
"""

from common import apply_isa_from_argv

apply_isa_from_argv()

import argparse  # noqa: E402
import collections  # noqa: E402
import datetime  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import bench_training as bt  # noqa: E402  (imports torch before TensorFlow)
import tensorflow as tf  # noqa: E402
from common import add_isa_argument, core_count, isa_line, machine_info  # noqa: E402

torch = bt.torch

STAGES = (
    "backbone",
    "FPN",
    "RPN head",
    "proposals",
    "targets + sampling",
    "RoIAlign",
    "box head",
    "mask head",
    "losses",
    "optimizer",
    "other",
)

# Keras layer-name prefixes of ours, in the order they are tried.
OUR_STAGE_PREFIXES = (
    ("fpn_", "FPN"),
    ("rpn_class_loss", "losses"),
    ("rpn_bbox_loss", "losses"),
    ("mrcnn_class_loss", "losses"),
    ("mrcnn_bbox_loss", "losses"),
    ("mrcnn_mask_loss", "losses"),
    ("rpn_", "RPN head"),
    ("ROI", "proposals"),
    ("norm_", "targets + sampling"),
    ("proposal_targets", "targets + sampling"),
    ("positive_roi", "targets + sampling"),
    ("roi_align", "RoIAlign"),
    ("mrcnn_class", "box head"),
    ("mrcnn_bbox", "box head"),
    ("pool_squeeze", "box head"),
    ("mrcnn_mask", "mask head"),
    ("conv1", "backbone"),
    ("bn_conv1", "backbone"),
    ("res", "backbone"),
    ("bn", "backbone"),
    ("small_", "backbone"),
)
OPTIMIZER_OPS = ("ResourceApply", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp")
# "scope/op_name:OpType"; runtime events such as "ExecutorState::Process" (two colons) are not ops.
OP_EVENT = re.compile(r"^([^:\s]+):(\w+)$")


def our_stage(op_name: str, op_type: str) -> tuple[str, str]:
    """(stage, "forward" / "backward") of one TensorFlow op of ours, from its name scope and type."""
    parts = op_name.split("/")
    backward = parts[0] == "gradient_tape"
    if backward:
        parts = parts[1:]
    if op_type.startswith(OPTIMIZER_OPS) or any(p.startswith("sgd") or p.startswith("SGD") for p in parts):
        return "optimizer", "forward"
    layer = parts[1] if len(parts) > 1 and parts[0].startswith("mask_rcnn") else ""
    for prefix, stage in OUR_STAGE_PREFIXES:
        if layer.startswith(prefix):
            return stage, "backward" if backward else "forward"
    return "other", "backward" if backward else "forward"


def op_self_times(xplane_path: str):
    """Yield (op name, op type, own seconds, enclosing op names) for every TensorFlow op event of a
    host-CPU xplane. An op's own time is its duration minus the op events nested in it on its thread
    (the branches of a ``tf.cond``, the ops of an inlined function); the enclosing names, innermost
    first, name the layer of ops whose own scope lost it (``cond/else/...``)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(xplane_path).read_bytes())
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            events = []
            for event in line.events:
                match = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if match:
                    events.append((event.offset_ps, event.offset_ps + event.duration_ps, match))
            events.sort(key=lambda e: (e[0], -e[1]))
            stack = []  # [start, end, match, nested picoseconds, enclosing op names]
            for start, end, match in events:
                while stack and stack[-1][1] <= start:
                    yield _finished(stack.pop())
                enclosing = []
                if stack:
                    stack[-1][3] += end - start
                    enclosing = [stack[-1][2].group(1), *stack[-1][4]]
                stack.append([start, end, match, 0, enclosing])
            while stack:
                yield _finished(stack.pop())


def _finished(item):
    start, end, match, nested, enclosing = item
    return match.group(1), match.group(2), (end - start - nested) * 1e-12, enclosing


def profile_ours(ours, first_step: int, steps: int) -> dict:
    """Seconds per step of ours by (stage, direction), traced over ``steps`` steps, and the step times."""
    totals = collections.Counter()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for step in range(first_step, first_step + steps):
            ours.step(step)
        tf.profiler.experimental.stop()
        for path in glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True):
            for name, op_type, seconds, enclosing in op_self_times(path):
                stage = our_stage(name, op_type)
                for outer in enclosing:
                    if stage[0] != "other":
                        break
                    stage = our_stage(outer, op_type)
                totals[stage] += seconds / steps
    return {"per_stage": totals, "traced_step_s": ours.times[-steps:]}


PEER_STAGE_PREFIX = "mrcnn-stage:"


def peer_stage_modules(model) -> dict:
    """torchvision's modules per stage; the RPN and RoI heads stand for what their parts do not cover."""
    heads = model.roi_heads
    return {
        "proposals": (model.rpn,),  # anchors, decoding, NMS and the RPN's losses (minus its head)
        "targets + sampling": (heads,),  # matching, sampling and the box/mask losses (minus the parts)
        "backbone": (model.backbone.body,),
        "FPN": (model.backbone.fpn,),
        "RPN head": (model.rpn.head,),
        "RoIAlign": (heads.box_roi_pool, heads.mask_roi_pool),
        "box head": (heads.box_head, heads.box_predictor),
        "mask head": (heads.mask_head, heads.mask_predictor),
    }


def _in_stage(function, stage):
    def wrapped(*args, **kwargs):
        with torch.profiler.record_function(PEER_STAGE_PREFIX + stage):
            return function(*args, **kwargs)

    return wrapped


def peer_stage_seconds(events) -> collections.Counter:
    """Seconds by (stage, direction) from torch profiler events: a forward op's own time goes to its
    innermost stage range; a backward function (``autograd::engine::evaluate_function``, its whole time)
    to the stage of the forward op with its sequence number."""
    totals = collections.Counter()
    stage_of_sequence = {}
    backward = []
    for event in events:
        if event.name.startswith("autograd::engine::evaluate_function"):
            backward.append(event)
            continue
        parent, stage, in_backward = event.cpu_parent, None, False
        while parent is not None:
            if parent.name.startswith("autograd::engine::evaluate_function"):
                in_backward = True
                break
            if stage is None and parent.name.startswith(PEER_STAGE_PREFIX):
                stage = parent.name[len(PEER_STAGE_PREFIX) :]
            parent = parent.cpu_parent
        if in_backward or event.name.startswith(PEER_STAGE_PREFIX):
            continue
        stage = stage or "other"
        if event.sequence_nr >= 0:
            stage_of_sequence.setdefault(event.sequence_nr, stage)
        totals[(stage, "forward")] += event.self_cpu_time_total * 1e-6
    for event in backward:
        stage = stage_of_sequence.get(event.sequence_nr, "other")
        totals[(stage, "backward")] += event.cpu_time_total * 1e-6
    return totals


def profile_peer(peer, first_step: int, steps: int) -> dict:
    """Seconds per step of torchvision by (stage, direction), profiled over ``steps`` steps."""
    wrapped = []
    for stage, modules in peer_stage_modules(peer.model).items():
        for module in modules:
            module.forward = _in_stage(module.forward, stage)
            wrapped.append(module)
    peer.optimizer.step = _in_stage(peer.optimizer.step, "optimizer")
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            for step in range(first_step, first_step + steps):
                peer.step(step)
    finally:
        for module in wrapped:
            del module.forward  # back to the class's forward
        del peer.optimizer.step
    totals = peer_stage_seconds(profiler.events())
    return {
        "per_stage": {key: value / steps for key, value in totals.items()},
        "traced_step_s": peer.times[-steps:],
    }


def stage_rows(per_stage: dict) -> list[tuple[str, float, float]]:
    """[(stage, forward s, backward s)] in STAGES order, the optimizer's time in its forward column."""
    return [(s, per_stage.get((s, "forward"), 0.0), per_stage.get((s, "backward"), 0.0)) for s in STAGES]


def markdown(report: dict) -> str:
    ours, peer = report["ours"], report.get("peer")
    ours_total = sum(f + b for _, f, b in ours["rows"])
    lines = [
        f"# Training step by stage, CPU ({report['date']})",
        "",
        f"**{report['settings']}**",
        "",
        "Seconds per step (forward / backward) and share of the step; the optimizer's update is in the "
        "forward column. Ours: TensorFlow profiler, op self-time by Keras layer; torchvision: torch "
        "profiler, op self-time by stage module (backward by autograd sequence number).",
        "",
    ]
    header = "| stage | ours fwd | ours bwd | ours share |"
    rule = "|---|---|---|---|"
    if peer:
        peer_total = sum(f + b for _, f, b in peer["rows"])
        header += " torchvision fwd | torchvision bwd | torchvision share | ours ÷ torchvision |"
        rule += "---|---|---|---|"
    lines += [header, rule]
    for index, (stage, forward, backward) in enumerate(ours["rows"]):
        row = (
            f"| {stage} | {forward:.3f} | {backward:.3f} | {100 * (forward + backward) / ours_total:.1f} % |"
        )
        if peer:
            _, pf, pb = peer["rows"][index]
            ratio = f"{(forward + backward) / (pf + pb):.2f}" if pf + pb > 0.005 else "n/a"
            row += f" {pf:.3f} | {pb:.3f} | {100 * (pf + pb) / peer_total:.1f} % | {ratio} |"
        lines.append(row)
    total = f"| **total** | | | {ours_total:.3f} s |"
    if peer:
        total += f" | | {peer_total:.3f} s | {ours_total / peer_total:.2f} |"
    lines += [total, ""]
    lines.append(
        f"- Traced step times: ours {', '.join(f'{t:.3f}' for t in ours['traced_step_s'])} s"
        + (f"; torchvision {', '.join(f'{t:.3f}' for t in peer['traced_step_s'])} s" if peer else "")
    )
    m = report["machine"]
    lines += [
        f"- Machine: {m['cpu']}, {m['cores_available']} cores available.",
        isa_line(m),
        f"- Versions: tensorflow {m['tensorflow']}, keras {m['keras']}, torch {m['torch']}, torchvision "
        f"{m['torchvision']}, mrcnn commit {m['mrcnn_commit']}.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(p)
    p.add_argument("--preset", default="shapes", choices=sorted(bt.PRESETS))
    p.add_argument("--depth", type=int, default=50, choices=[50, 101])
    p.add_argument("--warm-steps", type=int, default=2, help="untimed steps after the warm-up (default 2)")
    p.add_argument("--steps", type=int, default=2, help="profiled steps (default 2)")
    p.add_argument("--no-peer", action="store_true", help="profile ours only")
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    preset = bt.PRESETS[args.preset]
    args.size, args.batch, args.rois = preset["size"], preset["batch"], preset["rois"]
    args.backbone, args.precision, args.peer_precision = "resnet50", "float32", "float32"
    args.roi_positive_ratio = 0.33
    return args


def main(argv=None):
    args = parse_args(argv)
    cores = core_count()
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    use_peer = not args.no_peer and torch is not None
    if use_peer:
        torch.set_num_threads(cores)
        torch.set_num_interop_threads(cores)
    keras, mrcnn, MaskRCNN, MaskRCNNSequence, extract_bboxes, shapes = bt.import_mrcnn()
    config = bt.make_config(shapes, args)
    dataset = bt.make_dataset(shapes, args)
    first = 1 + args.warm_steps
    count = first + args.steps
    batches, _ = bt.build_batches(MaskRCNNSequence(dataset, config, steps=count, seed=0, workers=1), count)
    machine = machine_info(cores)
    print(isa_line(machine))
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": f"{args.preset} preset, R{args.depth}-FPN, {args.size} px, batch {args.batch}, "
        f"{args.rois} RoIs/image, float32, --isa {machine.get('isa_in_use', 'native')}, "
        f"{args.steps} profiled steps after {args.warm_steps} warm",
        "machine": machine,
    }
    with tempfile.TemporaryDirectory() as model_dir:
        ours = bt.OursBench(MaskRCNN, config, batches, model_dir)
        for step in range(1, first):
            ours.step(step)
        traced = profile_ours(ours, first, args.steps)
        report["ours"] = {"rows": stage_rows(traced["per_stage"]), "traced_step_s": traced["traced_step_s"]}
        print(f"ours profiled: steps {traced['traced_step_s']}")
    if use_peer:
        peer = bt.PeerBench(args, dataset, extract_bboxes, count)
        for step in range(1, first):
            peer.step(step)
        traced = profile_peer(peer, first, args.steps)
        report["peer"] = {"rows": stage_rows(traced["per_stage"]), "traced_step_s": traced["traced_step_s"]}
        print(f"torchvision profiled: steps {traced['traced_step_s']}")
    text = markdown(report)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
