"""mrcnn: Mask R-CNN for TensorFlow 2.21 and Keras 3, with Matterport's public API."""

import os

# TensorFlow's C++ info/warning lines (grappler cost-model notes, CUDA probing) drown the progress bar;
# errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "3.0.0.dev0"
