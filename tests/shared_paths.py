"""Where the read-only shared data lives: ``../shared`` beside the checkout, or $MRCNN_SHARED_DIR."""

import os
from pathlib import Path

SHARED_DIR = Path(os.environ.get("MRCNN_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))
LAYOUT_JSON = SHARED_DIR / "spec" / "coco_weights_layout.json"
DATA_DIR = SHARED_DIR / "data"
