"""The ``--config`` grammar of the ``mrcnn`` command and of the sample scripts, and class names.

Each ``--config`` item (repeatable; later items win) is one of

* ``NAME=VALUE``: one Config attribute. VALUE is read as JSON (numbers, lists, true, null) if it parses,
  else as ``module:function`` (a callable to import, e.g. ``BACKBONE=mrcnn.datasets.shapes:small_backbone``)
  or ``<callable mrcnn.module.function>`` (as ``Config.to_dict`` writes it), else as text;
* the path of a JSON file of Config attributes (``Config.to_dict``, e.g. ``LOG_DIR/config.json`` written
  by ``mrcnn train``), optionally with ``CLASS_NAMES``; callables in it may only name mrcnn functions;
* for the ``mrcnn`` command, a sample name (``mrcnn.sample_configs.SAMPLES``).

``samples/sample_utils.py`` uses :func:`parse_config_args` for the sample scripts' ``--config``.
"""

import importlib
import json
import os
import re
from collections.abc import Collection, Sequence
from typing import NamedTuple

from mrcnn.config import Config

CONFIG_ITEMS_HELP = (
    "NAME=VALUE overrides a config attribute (VALUE read as JSON, else MODULE:FUNCTION imports a "
    "callable, e.g. BACKBONE=mrcnn.datasets.shapes:small_backbone, else text); a .json path reads a "
    "config file (Config.to_dict, e.g. LOG_DIR/config.json written by mrcnn train); repeatable, later "
    "items win"
)
"""Help text of the grammar, shared by the command's and the samples' ``--config``."""


class UserError(ValueError):
    """A problem with the user's input: ``mrcnn`` reports it as ``mrcnn: error: <message>``, exit code 2."""


class ConfigArgs(NamedTuple):
    """What a list of ``--config`` items says."""

    sample: str | None  # the sample named, if any
    from_file: bool  # whether a JSON file was read
    values: dict  # attribute values, in command-line order
    class_names: list[str] | None  # CLASS_NAMES of the last JSON file that had them


def _resolve_callable(name: str, value: str):
    """The mrcnn function named by a ``to_dict`` placeholder "<callable mrcnn.module.function>"."""
    match = re.fullmatch(r"<callable (mrcnn(?:\.\w+)*)\.(\w+)>", value)
    if not match:
        raise UserError(
            f"config {name} is {value}: only functions of the mrcnn package can be named in a "
            "JSON config; use NAME=module:function on the command line or a Config subclass for others."
        )
    try:
        return getattr(importlib.import_module(match.group(1)), match.group(2))
    except (ImportError, AttributeError) as err:
        raise UserError(f"config {name} names {value}, which does not exist in this mrcnn version.") from err


def parse_value(name: str, text: str):
    """The value of ``--config NAME=text``: JSON, else an imported ``module:function``, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if text.startswith("<callable "):
        return _resolve_callable(name, text)
    module_name, sep, attribute = text.partition(":")
    if sep and module_name and attribute and "/" not in text:
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise UserError(
                f"--config value {text!r}: cannot import {attribute!r} from {module_name!r} ({err})"
            ) from err
    return text


def read_config_json(path: str) -> tuple[dict, list[str] | None]:
    """(attribute values, CLASS_NAMES or None) of a JSON config file; callable placeholders resolved."""
    try:
        with open(path) as f:
            values = json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f"--config {path} is not valid JSON ({err}).") from err
    if not isinstance(values, dict):
        raise UserError(
            f"--config {path} must hold a JSON object of config attributes, e.g. "
            '{"NAME": "mine", "NUM_CLASSES": 3}.'
        )
    class_names = values.pop("CLASS_NAMES", None)
    for key, value in values.items():
        if isinstance(value, str) and value.startswith("<callable "):
            values[key] = _resolve_callable(key, value)
    return values, class_names


def parse_config_args(items: Sequence[str] | None, samples: Collection[str] = ()) -> ConfigArgs:
    """Read ``--config`` items (see the module docstring); ``samples`` are the sample names allowed.

    Raises UserError (a ValueError) for an item that is none of these, two sample names, a bad JSON
    file or a VALUE naming a callable that cannot be imported.
    """
    sample, from_file, values, class_names = None, False, {}, None
    for item in items or ():
        name, sep, text = item.partition("=")
        if item in samples:
            if sample not in (None, item):
                raise UserError(f"--config names two samples, {sample} and {item}; give one.")
            sample = item
        elif os.path.isfile(item):
            file_values, names = read_config_json(item)
            values.update(file_values)
            class_names, from_file = names or class_names, True
        elif sep and name.strip().isidentifier():
            values[name.strip()] = parse_value(name.strip(), text)
        elif samples:
            raise UserError(
                f"--config {item!r} is neither a JSON file nor a sample config name ({', '.join(samples)}) "
                "nor NAME=VALUE (e.g. IMAGE_MAX_DIM=256)."
            )
        else:
            raise UserError(f"--config {item!r}: expected NAME=VALUE, e.g. IMAGE_MAX_DIM=256, or a JSON file")
    return ConfigArgs(sample, from_file, values, class_names)


def load_config(
    spec: str | Sequence[str] | None = None, inference: bool = False, **overrides
) -> tuple[Config, list[str] | None]:
    """(config, class names or None) for the ``mrcnn`` command's ``--config`` items ``spec``.

    The base is the sample named, else plain ``Config`` when a JSON file is given, else the coco sample.
    inference: start from the sample's inference config but keep its training DETECTION_MIN_CONFIDENCE
    (CocoInferenceConfig keeps every detection for COCOeval; ``mrcnn evaluate`` passes its own
    threshold), and detect one image at a time (GPU_COUNT 1, IMAGES_PER_GPU 1). overrides: further
    attributes, e.g. NUM_CLASSES=5 (derived values are recomputed). Raises UserError.
    """
    from mrcnn.sample_configs import SAMPLES

    items = [spec] if isinstance(spec, str) else list(spec or ())
    args = parse_config_args(items, SAMPLES)
    values = {}
    if args.sample is None and args.from_file:
        base, class_names = type(str(args.values.get("NAME") or "JsonConfig"), (Config,), {}), None
    else:
        sample = SAMPLES[args.sample or "coco"]
        base, class_names = sample.config, list(sample.class_names)
        if inference:
            base = sample.inference_config
            values["DETECTION_MIN_CONFIDENCE"] = sample.config.DETECTION_MIN_CONFIDENCE
    values.update(args.values)
    if inference:
        values.update(GPU_COUNT=1, IMAGES_PER_GPU=1)
    values.update(overrides)
    try:
        config = base.from_dict(values)
    except (ValueError, TypeError) as err:
        raise UserError(f"invalid config ({' '.join(items) or 'coco'}): {err}") from err
    return config, args.class_names or class_names


def parse_class_names(text: str, num_classes: int) -> list[str]:
    """Class names for ``--class-names``: comma-separated or a file with one name per line.

    With NUM_CLASSES - 1 names, "BG" is put first. Raises UserError when the count does not fit.
    """
    if os.path.isfile(text):
        with open(text) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [name.strip() for name in text.split(",")]
    if len(names) == num_classes - 1:
        names = ["BG", *names]
    if len(names) != num_classes:
        raise UserError(
            f"--class-names gives {len(names)} names but the config has "
            f"NUM_CLASSES={num_classes}; give {num_classes - 1} names (without the background) "
            f"or {num_classes} with 'BG' first."
        )
    return names


def config_to_json(config: Config, class_names: Sequence[str], path: str) -> None:
    """Write ``config.to_dict()`` with CLASS_NAMES to ``path`` (read back by ``--config path``)."""
    values = config.to_dict()
    values["CLASS_NAMES"] = list(class_names)
    with open(path, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
