"""Import an export runtime or converter, or say which extra installs it."""

import importlib
from types import ModuleType

EXTRA = 'pip install "mrcnn[export]"'


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``; if it is missing, raise ImportError naming ``purpose`` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the Python package {module.split('.')[0]!r}, which is not installed. "
            f'Install mrcnn\'s export extra: {EXTRA} (or, in a source checkout, pip install -e ".[export]").'
        ) from error
