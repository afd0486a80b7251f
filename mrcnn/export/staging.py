"""Write an export beside its destination and rename it into place, so no reader sees half a model."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


def destination(path: str | os.PathLike, overwrite: bool, suffix: str = "") -> str:
    """The absolute destination for ``path`` (``suffix`` appended when missing), checked: an existing
    file or folder there is refused unless ``overwrite``."""
    path = os.path.abspath(os.fspath(path))
    if suffix and not path.endswith(suffix):
        path += suffix
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists; choose another path or pass overwrite=True to replace it."
        )
    return path


@contextlib.contextmanager
def staged(path: str, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path (a new empty folder if ``directory``) beside ``path``; when the block ends
    without an error, move it to ``path`` (replacing what is there), else delete it."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    if directory:
        staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    else:
        handle, staging = tempfile.mkstemp(prefix=prefix, dir=parent)
        os.close(handle)
    try:
        yield staging
        _move_into_place(staging, path)
    finally:
        for leftover in (staging, staging + "-old"):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            elif os.path.lexists(leftover):
                os.remove(leftover)


def _move_into_place(staging: str, path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        os.rename(path, staging + "-old")  # a folder cannot be replaced by rename; the old one goes after
    os.replace(staging, path)
