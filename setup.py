"""Install mrcnn: Mask R-CNN for TensorFlow 2.21 and Keras 3."""

import os
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# Makes imgaug 0.4.0 importable on NumPy 2 (see _mrcnn_imgaug_compat.py); installed into site-packages.
IMGAUG_COMPAT_PTH = "mrcnn-imgaug-compat.pth"


class BuildPyWithPth(build_py):
    """build_py that also puts IMGAUG_COMPAT_PTH at the root of the build (so of the wheel: site-packages)."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / IMGAUG_COMPAT_PTH), os.path.join(self.build_lib, IMGAUG_COMPAT_PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, IMGAUG_COMPAT_PTH)]


# ONNX, TFLite/LiteRT and OpenVINO export (mrcnn.export): the versions tested with TF 2.21 and numpy 2.
EXPORT_REQUIREMENTS = [
    "tf2onnx==1.17.0",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
    "ai-edge-litert==2.3.0",
    "openvino==2026.4.1",
]


def read_requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def read_version():
    for line in (HERE / "mrcnn" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("mrcnn/__init__.py has no __version__")


setup(
    name="mrcnn",
    version=read_version(),
    description="Mask R-CNN for object detection and instance segmentation on TensorFlow 2 and Keras 3",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["mrcnn", "mrcnn.*"]),
    py_modules=["_mrcnn_imgaug_compat"],
    cmdclass={"build_py": BuildPyWithPth},
    python_requires=">=3.10",
    install_requires=read_requirements(),
    entry_points={"console_scripts": ["mrcnn=mrcnn.cli:main"]},
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            *EXPORT_REQUIREMENTS,  # the export tests run every runtime
            # imgaug augmenters in train() and imgaug 0.4.0 on NumPy 2 (tests/test_matterport_compat.py)
            "imgaug>=0.4.0",
        ],
        "export": EXPORT_REQUIREMENTS,
        # Matterport's samples (coco.py, nucleus.py, demo.ipynb) import imgaug; it pulls OpenCV.
        "imgaug": ["imgaug>=0.4.0"],
        "benchmark": ["torch==2.14.1", "torchvision==0.29.1"],
        # MP4/AVI colour-splash videos in samples/balloon (imageio's FFmpeg backend); GIF needs nothing.
        "video": ["av>=12"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
