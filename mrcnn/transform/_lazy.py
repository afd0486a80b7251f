"""TensorFlow, imported on first use, so that the numpy forms of ``mrcnn.transform`` (and Matterport's
``mrcnn.utils``, which re-exports them) load without it: ``tf`` here stands for the module."""

import importlib


class _LazyModule:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


tf = _LazyModule("tensorflow")
