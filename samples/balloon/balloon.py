"""Mask R-CNN on the balloon dataset, and the "color splash" effect (balloons in colour, the rest grey).

The dataset (VIA 1.x json, one class) is read with ``mrcnn.datasets.ViaDataset``: polygons touching or
crossing the image border are clipped (Matterport's loader raises IndexError on 13 of them).

Usage (run from anywhere):

    # Train the heads starting from the COCO weights (downloaded once), or from scratch
    python samples/balloon/balloon.py train --dataset /path/to/balloon --weights coco
    python samples/balloon/balloon.py train --dataset /path/to/balloon --weights none --epochs 5

    # Resume the newest run under --logs
    python samples/balloon/balloon.py train --dataset /path/to/balloon --weights last

    # Colour splash on an image or a video (GIF always; MP4/AVI need `pip install av`)
    python samples/balloon/balloon.py splash --weights last --image photo.jpg
    python samples/balloon/balloon.py splash --weights last --video clip.mp4

    # Shrink or change any configuration value
    python samples/balloon/balloon.py train ... --config IMAGE_MAX_DIM=512 --config STEPS_PER_EPOCH=20
"""

import argparse
import datetime
import importlib.util
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from mrcnn.datasets.via import ViaDataset  # noqa: E402
from mrcnn.download import DownloadError  # noqa: E402

# The sample's configs (Matterport's names) are shared with `mrcnn --config <sample>`: one copy.
from mrcnn.sample_configs import BalloonConfig, BalloonInferenceConfig  # noqa: E402
from samples import sample_utils  # noqa: E402
from samples.sample_utils import COCO_WEIGHTS_PATH, DEFAULT_LOGS_DIR  # noqa: E402,F401

SUBSETS = ("train", "val")
VIDEO_BACKEND_HINT = 'pip install av (or: pip install "mrcnn[video]")'


############################################################
#  Dataset
############################################################


class BalloonDataset(ViaDataset):
    """The balloon dataset: ``<dataset_dir>/<subset>/via_region_data.json`` and JPEGs, class "balloon"."""

    def load_balloon(self, dataset_dir, subset):
        """Register the images of ``subset`` ("train" or "val"). Call ``prepare()`` afterwards.

        Images without regions are skipped (as in Matterport). Image sizes are read from the JPEG headers.
        ``load_mask`` (inherited) draws the polygons clipped to the image.
        """
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        self.load_via(
            os.path.join(dataset_dir, subset, "via_region_data.json"),
            class_names=["balloon"],
            source="balloon",
        )


############################################################
#  Training
############################################################


def train(model, dataset_dir=None, epochs=30, layers="heads"):
    """Train ``model`` (training mode) on ``dataset_dir``'s train subset, validating on val.

    Matterport trains the heads for 30 epochs at the config's LEARNING_RATE starting from COCO weights.
    As in Matterport, ``train(model)`` alone uses the ``--dataset`` of the running command line.
    """
    if dataset_dir is None:
        if args is None or not args.dataset:
            raise ValueError(
                "train(model) needs the dataset folder: pass train(model, dataset_dir=...) "
                "or run `balloon.py train --dataset DIR`."
            )
        dataset_dir = args.dataset
    dataset_train = BalloonDataset()
    dataset_train.load_balloon(dataset_dir, "train")
    dataset_train.prepare()
    dataset_val = BalloonDataset()
    dataset_val.load_balloon(dataset_dir, "val")
    dataset_val.prepare()
    print(f"Training {layers}: {dataset_train.num_images} train / {dataset_val.num_images} val images")
    model.train(
        dataset_train, dataset_val, learning_rate=model.config.LEARNING_RATE, epochs=epochs, layers=layers
    )


############################################################
#  Colour splash
############################################################


def color_splash(image, mask):
    """Grey everywhere except the instances.

    image: uint8 RGB [H, W, 3]; mask: bool [H, W, N] (N may be 0). Returns uint8 [H, W, 3]: the original
    colours where any instance is, the luminance (skimage.color.rgb2gray) elsewhere.
    """
    import skimage.color

    image = np.asarray(image)
    gray = (skimage.color.rgb2gray(image) * 255).round().astype(np.uint8)
    gray = np.repeat(gray[:, :, None], 3, axis=2)
    if mask.shape[-1] == 0:
        return gray
    keep = np.any(mask, axis=-1, keepdims=True)
    return np.where(keep, image, gray).astype(np.uint8)


def _read_rgb(path):
    import skimage.color
    import skimage.io

    image = skimage.io.imread(path)
    if image.ndim == 2:
        image = skimage.color.gray2rgb(image)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _video_plugin():
    """The imageio plugin that reads and writes MP4/AVI here ("pyav", from the av package), or None."""
    return "pyav" if importlib.util.find_spec("av") is not None else None


def _splash_video(model, video_path, out_path):
    """Splash every frame of ``video_path`` into ``out_path`` (same container); returns the frame count."""
    import imageio.v3 as iio

    is_gif = video_path.lower().endswith(".gif")
    plugin = "pillow" if is_gif else _video_plugin()
    if plugin is None:
        raise RuntimeError(
            f"reading and writing {os.path.splitext(video_path)[1]} video needs an imageio "
            f"video backend: {VIDEO_BACKEND_HINT}. GIF videos work without one."
        )
    meta = iio.immeta(video_path, plugin=plugin)
    if is_gif:
        duration = meta.get("duration") or 100  # milliseconds per frame
        frames = [
            color_splash(frame[..., :3], model.detect([frame[..., :3]])[0]["masks"])
            for frame in iio.imiter(video_path, plugin=plugin, mode="RGB")
        ]
        iio.imwrite(out_path, np.stack(frames), plugin=plugin, duration=duration, loop=0)
        return len(frames)
    fps = float(meta.get("fps") or 25.0)
    count = 0
    with iio.imopen(out_path, "w", plugin=plugin) as writer:
        writer.init_video_stream("mpeg4", fps=fps)
        for frame in iio.imiter(video_path, plugin=plugin, format="rgb24"):
            splash = color_splash(frame, model.detect([frame])[0]["masks"])
            writer.write_frame(splash)
            count += 1
    return count


def detect_and_color_splash(model, image_path=None, video_path=None, out_dir="."):
    """Detect balloons and write ``splash_YYYYmmddTHHMMSS.png`` (image) or ``.<ext>`` (video) in out_dir.

    image_path: an image file or URL (read with skimage.io). video_path: a GIF (always supported) or
    an MP4/AVI/... file, read and written with imageio's pyav plugin (needs ``pip install av``;
    Matterport used OpenCV). The video keeps the input's container and frame rate. Returns the path
    written.
    """
    if bool(image_path) == bool(video_path):
        raise ValueError("give exactly one of image_path and video_path")
    os.makedirs(out_dir, exist_ok=True)
    stamp = f"{datetime.datetime.now():%Y%m%dT%H%M%S}"
    if image_path:
        import skimage.io

        print(f"Running on {image_path}")
        image = _read_rgb(image_path)
        result = model.detect([image], verbose=1)[0]
        out_path = os.path.join(out_dir, f"splash_{stamp}.png")
        skimage.io.imsave(out_path, color_splash(image, result["masks"]), check_contrast=False)
    else:
        if not os.path.isfile(video_path):
            raise FileNotFoundError(f"video not found: {video_path!r}")
        out_path = os.path.join(out_dir, f"splash_{stamp}{os.path.splitext(video_path)[1].lower()}")
        count = _splash_video(model, video_path, out_path)
        print(f"Splashed {count} frames")
    print(f"Saved to {out_path}")
    return out_path


############################################################
#  Command line
############################################################


def build_parser():
    parser = argparse.ArgumentParser(description="Train Mask R-CNN to detect balloons, or colour-splash them")
    parser.add_argument(
        "command", choices=["train", "splash"], metavar="<command>", help="'train' or 'splash'"
    )
    parser.add_argument(
        "--dataset", metavar="/path/to/balloon/", help="balloon dataset folder (with train/ and val/)"
    )
    sample_utils.add_weights_and_logs_arguments(parser)
    parser.add_argument("--image", metavar="path or URL", help="image to apply the colour splash to")
    parser.add_argument(
        "--video",
        metavar="path",
        help="video to apply the colour splash to (with --image too: both are splashed)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="train up to this epoch (default 30)")
    parser.add_argument("--out", default=".", help="folder for splash outputs (default: current folder)")
    sample_utils.add_config_argument(parser)
    return parser


# The parsed command line of the running `balloon.py` (Matterport's train(model) reads its --dataset).
args = None


def main(argv=None):
    global args
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and not args.dataset:
        parser.error("train needs --dataset")
    if args.command == "splash" and not (args.image or args.video):
        parser.error("splash needs --image or --video")
    model = sample_utils.build_model(parser, args, BalloonConfig, BalloonInferenceConfig)
    try:
        sample_utils.load_weights(model, args.weights)
        if args.command == "train":
            train(model, args.dataset, epochs=args.epochs)
        else:
            for image, video in ((args.image, None), (None, args.video)):
                if image or video:
                    detect_and_color_splash(model, image_path=image, video_path=video, out_dir=args.out)
    except (FileNotFoundError, DownloadError, RuntimeError) as e:
        print(f"balloon.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
