"""The README's main job, shrunk: shapes.py demo trains, evaluates and writes a detections picture."""

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_shapes_demo_command_line(tmp_path):
    logs = tmp_path / "logs"
    out = tmp_path / "detections.png"
    command = [
        sys.executable,
        str(ROOT / "samples" / "shapes" / "shapes.py"),
        "demo",
        "--logs",
        str(logs),
        "--minutes",
        "0.01",
        "--steps-per-epoch",
        "2",
        "--train-images",
        "16",
        "--images",
        "4",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "mask mAP@0.5 = " in result.stdout
    assert "Epoch 1: validation mask mAP@0.5 " in result.stdout  # the target check's progress line
    run_dirs = [d for d in os.listdir(logs) if d.startswith("shapes")]
    assert len(run_dirs) == 1
    assert "mask_rcnn_shapes_0001.h5" in os.listdir(logs / run_dirs[0])
    with Image.open(out) as picture:
        assert picture.width > 600 and picture.height > 200


def test_shapes_help_and_bad_command():
    script = str(ROOT / "samples" / "shapes" / "shapes.py")
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "demo" in help_text.stdout
    bad = subprocess.run([sys.executable, script, "fly"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
