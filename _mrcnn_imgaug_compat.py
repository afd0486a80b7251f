"""imgaug 0.4.0 on NumPy 2: restore ``numpy.sctypes`` just before imgaug is imported.

imgaug 0.4.0 (its last release, used by Matterport's samples) reads ``numpy.sctypes`` when it is
imported; NumPy 2.0 removed that attribute, so ``import imgaug`` fails with "np.sctypes was removed in
the NumPy 2.0 release". mrcnn installs ``mrcnn-imgaug-compat.pth`` next to itself in site-packages, which
runs ``install()`` at interpreter start-up. ``install()`` only adds an import hook: nothing is imported and
numpy is untouched until a program imports ``imgaug`` (whether or not it imports mrcnn, and before or after
it, as Matterport's coco.py and nucleus.py do). At that moment, and only if numpy has no ``sctypes``,
the hook sets ``numpy.sctypes`` to the dict NumPy 1.x had (the same type objects, grouped by kind), then
lets the import proceed normally.

Set the environment variable ``MRCNN_IMGAUG_COMPAT=0`` to turn the hook off. It lives in this top-level
module, not in the ``mrcnn`` package, so that interpreter start-up never imports mrcnn.

Editable installs (``pip install -e``) cannot place the .pth file: run ``python -m _mrcnn_imgaug_compat``
once to write it into the environment's site-packages.
"""

from __future__ import annotations

import os
import sys
import sysconfig

__all__ = ["install", "restore_numpy_sctypes"]


def restore_numpy_sctypes() -> bool:
    """Set ``numpy.sctypes`` to NumPy 1.x's value if numpy lacks it; returns True when it was set."""
    import numpy

    if "sctypes" in vars(numpy):
        return False
    try:
        numpy.sctypes  # noqa: B018  (NumPy 1.x: present; NumPy 2: raises AttributeError)
        return False
    except AttributeError:
        pass
    numpy.sctypes = {
        "int": [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        "uint": [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        "float": [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
        "complex": [numpy.complex64, numpy.complex128, numpy.clongdouble],
        "others": [bool, object, bytes, str, numpy.void],
    }
    return True


class _ImgaugImportHook:
    """A ``sys.meta_path`` finder that finds nothing: on the import of ``imgaug`` it restores
    ``numpy.sctypes`` and leaves the import to the regular finders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "imgaug":
            restore_numpy_sctypes()
        return None


def install() -> None:
    """Put the import hook first on ``sys.meta_path`` (once; not when MRCNN_IMGAUG_COMPAT=0)."""
    if os.environ.get("MRCNN_IMGAUG_COMPAT", "1") == "0":
        return
    if not any(isinstance(finder, _ImgaugImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImgaugImportHook())


PTH_NAME = "mrcnn-imgaug-compat.pth"
PTH_LINE = "import _mrcnn_imgaug_compat; _mrcnn_imgaug_compat.install()\n"


def write_pth(site_packages: str | None = None) -> str:
    """Write the start-up file into ``site_packages`` (default: this environment's purelib); returns its
    path. Needed only for editable installs: a regular install ships the file."""
    path = os.path.join(site_packages or sysconfig.get_paths()["purelib"], PTH_NAME)
    with open(path, "w") as fh:
        fh.write(PTH_LINE)
    return path


if __name__ == "__main__":
    print(f"wrote {write_pth()}: 'import imgaug' now works on NumPy 2 in this environment")
