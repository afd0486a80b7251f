"""Read and write model weights in the Keras 2 HDF5 layout used by Matterport's ``mask_rcnn_coco.h5``.

Layout (Keras 2.0.8 ``save_weights``):

* root attribute ``layer_names``: the model's top-level layer names, bytes strings, in model order;
* one group per layer with attribute ``weight_names`` (bytes, Keras 2 names ``<layer>/<var>:0``, e.g.
  ``conv1/kernel:0``); weightless layers have an empty list;
* each weight is a dataset at the path of its name inside the layer group: ``conv1/kernel:0`` is
  group ``conv1`` -> subgroup ``conv1`` -> dataset ``kernel:0``;
* a nested model (``rpn_model``) is one group whose weights are named after the inner layers:
  ``rpn_conv_shared/kernel:0``, ``rpn_class_raw/bias:0``, ...;
* an attribute too large for an HDF5 object header is split into ``<name>0``, ``<name>1``, ...;
* a Keras 2 full-model file (``model.save``) keeps all of this under a ``model_weights`` group.

Only ``h5py`` is used to read files (no pickle, no code execution). Keras 3 ``.keras`` archives and
``.weights.h5`` files are a different layout and are rejected with an explanation.

``read_weights_layout`` and ``describe_weights`` inspect a file (layers, shapes, the config it fits)
without building a model; Keras is imported only by the functions that take a model, so inspecting a
file stays quick.
"""

import contextlib
import os
import zipfile

import h5py
import numpy as np

import mrcnn

HDF5_OBJECT_HEADER_LIMIT = 64512
"""Largest attribute (bytes) written in one piece; bigger ones are split as Keras 2 does."""

CLASS_SPECIFIC_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
"""Layers whose weights depend on NUM_CLASSES (the list Matterport's samples exclude)."""

_SUPPORTED = (
    "mrcnn reads Keras 2 HDF5 weights in Matterport's layout (mask_rcnn_coco.h5, files written by "
    "Keras 2 model.save_weights('x.h5') / model.save('x.h5'), or by mrcnn.weights.save_weights_hdf5)"
)


def _weight_entries(layer):
    """``[(keras2_name, variable), ...]`` for one layer, in Keras 2 order.

    Plain layers name their weights ``<layer>/<var>:0`` (sub-layer variables with clashing short names
    use their Keras 3 path instead); a nested model contributes its inner layers' weights, named after
    the inner layers.
    """
    import keras

    if isinstance(layer, keras.Model):
        return [entry for inner in layer.layers for entry in _weight_entries(inner)]
    names = [f"{layer.name}/{v.name}:0" for v in layer.weights]
    if len(set(names)) < len(names):
        names = [f"{v.path}:0" for v in layer.weights]
    return list(zip(names, layer.weights))


def _check_model(keras_model):
    import keras

    if not isinstance(keras_model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(keras_model).__name__}.")


def _write_names_attr(group, name, values):
    """Store a list of str as a bytes-string attribute, split into ``name0, name1, ...`` if large."""
    data = np.array([v.encode("utf8") for v in values]) if values else np.array([], dtype="S1")
    chunks = [data]
    while any(chunk.nbytes > HDF5_OBJECT_HEADER_LIMIT for chunk in chunks) and len(chunks) < len(data):
        chunks = np.array_split(data, len(chunks) + 1)
    if len(chunks) == 1:
        group.attrs[name] = data
    else:
        for i, chunk in enumerate(chunks):
            group.attrs[f"{name}{i}"] = chunk


def _has_names_attr(group, name):
    return name in group.attrs or f"{name}0" in group.attrs


def _read_names_attr(group, name):
    """List of str from an attribute written by :func:`_write_names_attr` (or by Keras 2)."""
    if name in group.attrs:
        raw = list(group.attrs[name])
    else:
        raw, i = [], 0
        while f"{name}{i}" in group.attrs:
            raw.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in raw]


def save_weights_hdf5(keras_model, filepath):
    """Write every weight of ``keras_model`` to ``filepath`` in the Keras 2 (Matterport) HDF5 layout.

    All top-level layers are listed (weightless ones as empty groups). The file is written to
    ``<filepath>.tmp-<pid>``, flushed to disk and then atomically renamed over ``filepath``: a crash or an
    error leaves any previous file at ``filepath`` intact and no temporary file behind (a SIGKILL can leave
    the ``.tmp-<pid>`` file, which ``find_last`` ignores: it does not end in ``.h5``). An OSError while
    writing (e.g. ENOSPC, disk full) is re-raised as an OSError with the same errno naming ``filepath``.
    Root attributes ``backend``, ``keras_version`` and ``mrcnn_version`` record the writer.
    """
    import keras

    _check_model(keras_model)
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save weights to {filepath}: directory {directory} does not exist.")
    tmp_path = f"{filepath}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp_path, "w") as f:
            # Fixed-length bytes, as Keras 2 wrote them (its loader calls .decode() on these).
            f.attrs["backend"] = np.bytes_(b"tensorflow")
            f.attrs["keras_version"] = np.bytes_(keras.__version__.encode("utf8"))
            f.attrs["mrcnn_version"] = np.bytes_(mrcnn.__version__.encode("utf8"))
            _write_names_attr(f, "layer_names", [layer.name for layer in keras_model.layers])
            for layer in keras_model.layers:
                group = f.create_group(layer.name)
                entries = _weight_entries(layer)
                _write_names_attr(group, "weight_names", [name for name, _ in entries])
                for name, variable in entries:
                    group.create_dataset(name, data=np.asarray(variable))
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, filepath)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        if isinstance(error, OSError):
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise OSError(
                error.errno,
                f"Could not write weights to {filepath}: {reason} ({error}). Free disk space or choose "
                "another directory; the previous file at that path (if any) is unchanged and no partial file "
                "is left.",
                filepath,
            ) from error
        raise
    # Persist the rename itself; not possible on every platform (e.g. Windows), hence best effort.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_weights_file(filepath):
    """Reject missing files and files that are not HDF5 before h5py sees them."""
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"Weights file not found: {filepath}")
    if os.path.isdir(filepath):
        raise ValueError(f"{filepath} is a directory, not an HDF5 weights file. {_SUPPORTED}.")
    if zipfile.is_zipfile(filepath):
        raise ValueError(
            f"{filepath} is a Keras 3 '.keras' archive, not an HDF5 weights file. {_SUPPORTED}. "
            "Load a .keras model with keras.saving.load_model(), or save this model's weights with "
            "save_weights_hdf5()."
        )
    if not h5py.is_hdf5(filepath):
        raise ValueError(
            f"{filepath} is not a valid HDF5 weights file (wrong format, or an incomplete download); "
            "re-download or re-create it."
        )


def _weights_root(f, filepath):
    """The group holding ``layer_names``: the file root, or ``model_weights`` of a full-model file."""
    if _has_names_attr(f, "layer_names"):
        return f
    if "model_weights" in f and _has_names_attr(f["model_weights"], "layer_names"):
        return f["model_weights"]
    if "layers" in f and "vars" in f:
        raise ValueError(
            f"{filepath} is a Keras 3 '.weights.h5' file (layers/<name>/vars/<i>), which has no layer names "
            f"to match by. {_SUPPORTED}. Load it with keras_model.load_weights() into the identical model."
        )
    raise ValueError(
        f"{filepath} has no 'layer_names' attribute, so it is not a Keras 2 weights file. {_SUPPORTED}."
    )


def _mismatch_hint(layer_name):
    hint = f"If the file was made for another configuration, skip this layer with exclude=['{layer_name}']"
    if layer_name in CLASS_SPECIFIC_LAYERS:
        hint += f" (for a different NUM_CLASSES use exclude={CLASS_SPECIFIC_LAYERS})"
    return hint + "."


def _match_layer(layer_name, group, file_layer, entries, filepath):
    """Read one file layer's arrays and pair them with the model layer's variables.

    Weights are paired by Keras 2 name when the file's names equal the model's, otherwise by position
    (``weight_names`` order, as Keras does). Raises ValueError on a count or shape mismatch.
    """
    weight_names = _read_names_attr(group, "weight_names")
    model_names = [name for name, _ in entries]
    if len(weight_names) != len(entries):
        raise ValueError(
            f"Layer '{layer_name}' has {len(entries)} weights in the model {model_names} but file layer "
            f"'{file_layer}' in {filepath} has {len(weight_names)} {weight_names}. "
            + _mismatch_hint(layer_name)
        )
    if sorted(weight_names) == sorted(model_names) and len(set(model_names)) == len(model_names):
        by_name = dict(entries)
        variables = [by_name[name] for name in weight_names]
    else:
        variables = [variable for _, variable in entries]
    pairs = []
    for name, variable in zip(weight_names, variables):
        try:
            array = np.asarray(group[name])
        except KeyError as err:
            raise ValueError(
                f"{filepath} is not a valid HDF5 weights file: layer '{file_layer}' lists weight '{name}' "
                "but has no such dataset. Re-download or re-create the file."
            ) from err
        if array.dtype.kind not in "fiub":
            raise ValueError(
                f"{filepath}: weight '{name}' of layer '{file_layer}' holds {array.dtype} data, not numbers; "
                "weights must be numeric HDF5 datasets. Re-download or re-create the file."
            )
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"Shape mismatch for layer '{layer_name}': weight '{name}' is {tuple(array.shape)} in "
                f"{filepath} but {tuple(variable.shape)} in the model. {_mismatch_hint(layer_name)}"
            )
        pairs.append((variable, array))
    return pairs


class WeightsReport(dict):
    """What ``load_weights`` assigned: a dict with ``loaded``, ``tensors``, ``missing``, ``unused`` and
    ``excluded`` (see ``load_weights_hdf5``) whose repr is one line, so a notebook cell ending with
    ``model.load_weights(...)`` prints a summary rather than every layer name (Matterport returned None)."""

    def __repr__(self) -> str:
        return (
            f"<WeightsReport: {self['tensors']} tensors into {len(self['loaded'])} layers; "
            f"{len(self['missing'])} model layers not in the file, {len(self['unused'])} file layers unused, "
            f"{len(self['excluded'])} excluded>"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        """IPython's display: the one-line repr (IPython would otherwise pretty-print the dict)."""
        printer.text(repr(self))


def load_weights_hdf5(keras_model, filepath, by_name=True, exclude=None):
    """Assign weights from a Keras 2 layout HDF5 file to ``keras_model``.

    Args:
        keras_model: the keras.Model to fill (its top-level layers are matched; a nested model such as
            ``rpn_model`` is one layer).
        filepath: path of the .h5 file (weights-only or full-model).
        by_name: True matches file layers to model layers by name: file layers absent from the model are
            ignored, model layers absent from the file keep their values and are reported. False pairs
            the layers that have weights in order (file order vs. ``keras_model.layers`` order) and
            requires equal counts.
        exclude: layer names to skip (in the file and in the model), e.g. the class-specific heads when
            NUM_CLASSES differs from the file's.

    Returns:
        a ``WeightsReport`` (a dict with a one-line repr) with ``loaded`` (model layer names assigned),
        ``tensors`` (number of arrays assigned), ``missing`` (model layers with weights not in the file),
        ``unused`` (file layers with weights not in the model) and ``excluded`` (names from ``exclude``
        present in the file or model).

    Raises:
        FileNotFoundError: no file at ``filepath``.
        ValueError: not a valid / supported HDF5 weights file, or a weight count or shape mismatch (the
            message names the layer and suggests ``exclude``). Nothing is assigned when it raises.
    """
    _check_model(keras_model)
    if isinstance(exclude, str):
        raise TypeError(
            f"exclude must be a list of layer names, not the string {exclude!r}; use [{exclude!r}]."
        )
    exclude = set(exclude or ())
    filepath = os.fspath(filepath)
    _check_weights_file(filepath)

    model_layers = [(layer.name, _weight_entries(layer)) for layer in keras_model.layers]
    model_layers = [(name, entries) for name, entries in model_layers if entries]
    try:
        with h5py.File(filepath, "r") as f:
            root = _weights_root(f, filepath)
            file_layers = []
            for name in _read_names_attr(root, "layer_names"):
                if name not in root:
                    raise ValueError(
                        f"{filepath} is not a valid HDF5 weights file: layer '{name}' is listed but has no "
                        "group. Re-download or re-create the file."
                    )
                if _read_names_attr(root[name], "weight_names"):
                    file_layers.append(name)
            excluded = sorted(exclude & ({n for n, _ in model_layers} | set(file_layers)))
            file_layers = [n for n in file_layers if n not in exclude]
            model_layers = [(n, e) for n, e in model_layers if n not in exclude]

            if by_name:
                model_map = dict(model_layers)
                pairs_by_layer = {
                    name: _match_layer(name, root[name], name, model_map[name], filepath)
                    for name in file_layers
                    if name in model_map
                }
                unused = [name for name in file_layers if name not in model_map]
                if file_layers and not pairs_by_layer:
                    raise ValueError(
                        f"No layer of {filepath} matches a layer of the model: the file's layers are "
                        f"{file_layers[:4]}..., the model's {[n for n, _ in model_layers][:4]}.... It is the "
                        "weights file of another architecture (e.g. a keras.applications classifier, whose "
                        f"layer names differ). {_SUPPORTED}; for ImageNet backbone weights use "
                        "MaskRCNN.get_imagenet_weights()."
                    )
            else:
                if len(file_layers) != len(model_layers):
                    raise ValueError(
                        f"{filepath} has {len(file_layers)} layers with weights but the model has "
                        f"{len(model_layers)}; load with by_name=True to match layers by name."
                    )
                pairs_by_layer = {
                    name: _match_layer(name, root[file_name], file_name, entries, filepath)
                    for file_name, (name, entries) in zip(file_layers, model_layers)
                }
                unused = []
    except OSError as err:
        raise ValueError(
            f"{filepath} is not a valid HDF5 weights file (truncated or corrupt: {err}); re-download or "
            "re-create it."
        ) from err

    for pairs in pairs_by_layer.values():
        for variable, array in pairs:
            variable.assign(array.astype(variable.dtype, copy=False))
    return WeightsReport(
        loaded=list(pairs_by_layer),
        tensors=sum(len(pairs) for pairs in pairs_by_layer.values()),
        missing=[n for n, _ in model_layers if n not in pairs_by_layer],
        unused=unused,
        excluded=excluded,
    )


############################################################
#  Inspecting a file: its layers and the config it fits
############################################################

Layout = list[tuple[str, list[tuple[str, tuple[int, ...], str]]]]
"""``[(layer name, [(weight name, shape, dtype name), ...]), ...]`` in file order."""

# Config values a file reveals through the kernel shape of one of its layers (Matterport's layer names,
# which the file format fixes): attribute -> (layer, kernel axis, divisor).
_KERNEL_EVIDENCE = {
    "NUM_CLASSES": (CLASS_SPECIFIC_LAYERS[0], -1, 1),
    "TOP_DOWN_PYRAMID_SIZE": ("fpn_c5p5", -1, 1),
    "FPN_CLASSIF_FC_LAYERS_SIZE": ("mrcnn_class_conv1", -1, 1),
    "POOL_SIZE": ("mrcnn_class_conv1", 0, 1),
    "FPN_MASK_CONV_LAYERS_SIZE": ("mrcnn_mask_conv1", -1, 1),
    "ANCHORS_PER_LOCATION": ("rpn_class_raw", -1, 2),  # two scores (background, object) per anchor
}

SMALL_BACKBONE = "small_backbone"
"""Label of ``mrcnn.datasets.shapes.small_backbone``, whose layers are named ``small_c1``, ``small_c2a``..."""


def read_weights_layout(filepath: str | os.PathLike) -> Layout:
    """The layers with weights of a Keras 2 layout HDF5 file, with their weights' names, shapes and dtypes.

    Reads with h5py only (no model, no TensorFlow). Raises FileNotFoundError or ValueError (as
    :func:`load_weights_hdf5` does) for a missing, non-HDF5 or non-Keras-2 file.
    """
    filepath = os.fspath(filepath)
    _check_weights_file(filepath)
    layers = []
    with h5py.File(filepath, "r") as f:
        root = _weights_root(f, filepath)
        for name in _read_names_attr(root, "layer_names"):
            group = root.get(name)
            names = _read_names_attr(group, "weight_names") if group is not None else []
            if names:
                layers.append((name, [(w, tuple(group[w].shape), str(group[w].dtype)) for w in names]))
    return layers


def _backbone_of_layers(layer_names):
    """ "resnet<depth>" from the bottleneck blocks (``res<stage><block>_branch2a``), "small_backbone" or
    "unknown"."""
    blocks = [n for n in layer_names if n.startswith("res") and n[3:4].isdigit() and n.endswith("_branch2a")]
    if blocks:
        return f"resnet{3 * len(blocks) + 2}"  # 3 convolutions per block, plus conv1 and the classifier
    if any(name.startswith("small_c") for name in layer_names):
        return SMALL_BACKBONE
    return "unknown"


def backbone_label(config) -> str:
    """``config.BACKBONE`` as :func:`describe_weights` names it: "resnet50", "resnet101", "small_backbone"
    or "unknown" (another callable)."""
    if isinstance(config.BACKBONE, str):
        return config.BACKBONE
    return SMALL_BACKBONE if getattr(config.BACKBONE, "__name__", None) == SMALL_BACKBONE else "unknown"


def config_evidence(config) -> dict:
    """The values :func:`describe_weights` reads from a file, as a model of ``config`` would have them."""
    values = {key: getattr(config, key) for key in _KERNEL_EVIDENCE if hasattr(config, key)}
    values["BACKBONE"] = backbone_label(config)
    values["ANCHORS_PER_LOCATION"] = len(config.RPN_ANCHOR_RATIOS)
    return values


def config_mismatches(config, likely: dict) -> list[tuple[str, object, object]]:
    """``[(attribute, file value, config value), ...]`` where the file's ``likely`` values (from
    :func:`describe_weights`) contradict ``config``; "unknown" on either side is no contradiction."""
    expected = config_evidence(config)
    return [
        (key, likely[key], expected[key])
        for key in expected
        if key in likely and "unknown" not in (likely[key], expected[key]) and likely[key] != expected[key]
    ]


def describe_weights(filepath: str | os.PathLike, candidates: dict | None = None) -> dict:
    """Layers, tensors and the likely config of an HDF5 weights file in Matterport's layout.

    Returns {"layers": :func:`read_weights_layout`, "tensors": int, "parameters": int, "likely": dict}.
    "likely" holds NUM_CLASSES, BACKBONE ("resnet50", "resnet101", "small_backbone" or "unknown"),
    TOP_DOWN_PYRAMID_SIZE, FPN_CLASSIF_FC_LAYERS_SIZE, POOL_SIZE, FPN_MASK_CONV_LAYERS_SIZE and
    ANCHORS_PER_LOCATION as far as the file's layers show them, and "sample": the first name of
    ``candidates`` ({name: Config instance}) whose config the file fits, if any.
    """
    layers = read_weights_layout(filepath)
    shapes = {w: shape for _, entries in layers for w, shape, _ in entries}
    found = {
        key: shapes[f"{layer}/kernel:0"][axis] // divisor
        for key, (layer, axis, divisor) in _KERNEL_EVIDENCE.items()
        if shapes.get(f"{layer}/kernel:0")
    }
    likely = {"NUM_CLASSES": found.pop("NUM_CLASSES")} if "NUM_CLASSES" in found else {}
    likely["BACKBONE"] = _backbone_of_layers([name for name, _ in layers])
    likely.update(found)
    known = "NUM_CLASSES" in likely and likely["BACKBONE"] != "unknown"
    for name, config in (candidates or {}).items():
        if known and not config_mismatches(config, likely):
            likely["sample"] = name
            break
    return {
        "layers": layers,
        "tensors": sum(len(entries) for _, entries in layers),
        "parameters": sum(int(np.prod(shape)) for _, entries in layers for _, shape, _ in entries),
        "likely": likely,
    }
