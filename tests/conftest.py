"""Shared test setup. The tiny configs live in ``tiny_configs.py`` (import them from there, not from here):

- ``Tiny64Config``, ``TinyTargetsConfig``: Matterport's ``Config`` at 64x64, for the numpy and graph stages;
- ``Shapes64Config``, ``TinyShapesConfig``, ``TinyShapesTrainConfig``: the shapes demo's small-backbone
  config at 64x64, for tests that build (and train) a MaskRCNN;
- ``config_with(base, **overrides)``: an instance of a one-off subclass with the overrides.

Kernel choices are not measured in tests (``MRCNN_MEASURE_KERNELS=0``): every fast path runs where it fits.
"""

import os
import sys
from pathlib import Path

# Deterministic kernels: every fast path where it fits, no timing, no cache file in the home directory
# (tests/test_kernel_choice.py turns measuring on where it tests it).
os.environ.setdefault("MRCNN_MEASURE_KERNELS", "0")
os.environ.setdefault("MRCNN_KERNEL_CACHE", "0")

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:  # the test modules import tiny_configs, weights_fixture, ... by bare name
    sys.path.insert(0, TESTS_DIR)

import tiny_configs  # noqa: E402, F401  (fails collection early and clearly if the shared configs break)
