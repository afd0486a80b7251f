"""Synthetic shapes sample: train Mask R-CNN from scratch, evaluate it, draw its detections.

    python samples/shapes/shapes.py demo --logs logs

The dataset and configs live in ``mrcnn.datasets.shapes`` and the commands in ``mrcnn.shapes_demo`` (so an
installed package has them; ``mrcnn demo`` runs the same job); this script keeps the sample's names.
"""

import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from mrcnn.datasets.shapes import (  # noqa: E402, F401
    SHAPE_NAMES,
    SMALL_BACKBONE_WIDTHS,
    ShapesConfig,
    ShapesDataset,
    ShapesFastConfig,
    ShapesInferenceConfig,
    make_dataset,
    small_backbone,
    small_backbone_shapes,
)
from mrcnn.shapes_demo import (  # noqa: E402, F401
    TEST_SEED,
    TRAIN_SEED,
    VAL_SEED,
    evaluate,
    load_inference_model,
    main,
    train,
    write_detections_picture,
)

if __name__ == "__main__":
    sys.exit(main())
