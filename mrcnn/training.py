"""Training machinery: the Keras model with a custom ``train_step``, and callbacks.

The training graph ends in five named loss layers (``rpn_class_loss``, ``rpn_bbox_loss``,
``mrcnn_class_loss``, ``mrcnn_bbox_loss``, ``mrcnn_mask_loss``; ``mrcnn.losses``), as in Matterport.
``MaskRCNNTrainer`` sums them with ``LOSS_WEIGHTS`` plus L2 weight decay in its ``train_step`` and
reports each one as a Keras metric, so the progress bar and TensorBoard show all five and the total,
for training and validation.

Distributed training (``tf.distribute``): ``training_strategy`` picks the strategy of a Config, and
``MaskRCNNTrainer.train_step`` makes one step on N replicas equal to one step of one device on the
global batch (losses normalized over the global batch by ``mrcnn.losses``, gradients summed across
replicas and clipped after the sum).
"""

import contextlib
import json
import math
import os
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from mrcnn import kernels
from mrcnn.data import MaskRCNNSequence
from mrcnn.losses import LOSS_NAMES
from mrcnn.weights import save_weights_hdf5


def is_decayed(variable):
    """True for weights that get L2 decay: everything but BatchNorm gamma and beta (Matterport's rule)."""
    name = variable.path if hasattr(variable, "path") else variable.name
    leaf = name.split("/")[-1].split(":")[0]
    return leaf not in ("gamma", "beta")


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskRCNNTrainer(keras.Model):
    """The functional training graph plus a ``train_step`` that minimises the weighted loss sum.

    The total is ``sum(LOSS_WEIGHTS[name] * loss[name]) + sum_w WEIGHT_DECAY * sum(w**2) / size(w)``
    over trainable weights except BatchNorm gamma/beta (Matterport's weight decay, which divides each
    weight's L2 term by its size). Model outputs must end with the five loss tensors in LOSS_NAMES order.

    Under a strategy with N > 1 replicas in sync, each replica minimises total / N (the Keras
    convention; the losses are already global-batch means, see ``mrcnn.losses``). The optimizer's
    clipping (``clipnorm``, ``global_clipnorm`` or ``clipvalue``) must see the global gradient, but
    Keras 3 clips each replica's part before summing them, so the step first sums the gradients over
    the replicas, clips the sum and hands each replica's 1/N share to the optimizer, which sums the
    shares again (its own clipping of a share is then a no-op). The update is the single-device one,
    at the cost of a second all-reduce. Loss scaling (``LossScaleOptimizer``) is applied to the loss and
    undone by the optimizer, as in Keras' own ``train_step``.
    """

    def __init__(self, *args, loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights_by_name = dict(loss_weights or {name: 1.0 for name in LOSS_NAMES})
        self.weight_decay = float(weight_decay)
        self.loss_trackers = [keras.metrics.Mean(name="loss")] + [
            keras.metrics.Mean(name=name) for name in LOSS_NAMES
        ]

    @property
    def metrics(self):
        return self.loss_trackers

    def get_config(self):
        config = super().get_config()
        config.update(loss_weights=self.loss_weights_by_name, weight_decay=self.weight_decay)
        return config

    def _compute_losses(self, x, training):
        outputs = self(x, training=training)
        named = dict(zip(LOSS_NAMES, outputs[-len(LOSS_NAMES) :]))
        total = tf.add_n(
            [
                tf.cast(self.loss_weights_by_name[name], tf.float32) * tf.reduce_mean(value)
                for name, value in named.items()
            ]
        )
        return total, named

    def _weight_decay(self, gradients, variables, gradient_scale):
        """Matterport's L2 weight decay, added to ``gradients`` explicitly: (value, gradients).

        value = WEIGHT_DECAY * sum over decayed w of sum(w**2) / size(w); each decayed weight's gradient
        gets ``gradient_scale * 2 * WEIGHT_DECAY / size(w) * w`` (the term's gradient, scaled like the
        loss's). The same result as differentiating the term in the tape, in two element-wise ops per
        weight instead of six, and the value in one ``L2Loss`` pass.
        """
        if self.weight_decay == 0:
            return tf.constant(0.0), gradients
        values, decayed_gradients = [], []
        for gradient, weight in zip(gradients, variables):
            if is_decayed(weight):
                weight = tf.cast(weight, tf.float32)
                size = tf.cast(tf.size(weight), tf.float32)
                values.append(2.0 * tf.nn.l2_loss(weight) / size)
                term = (gradient_scale * 2.0 * self.weight_decay / size) * weight
                gradient = term if gradient is None else gradient + tf.cast(term, gradient.dtype)
            decayed_gradients.append(gradient)
        if not values:
            return tf.constant(0.0), gradients
        return self.weight_decay * tf.add_n(values), decayed_gradients

    def _update_metrics(self, total, named):
        self.loss_trackers[0].update_state(total)
        for tracker, name in zip(self.loss_trackers[1:], LOSS_NAMES):
            tracker.update_state(tf.reduce_mean(named[name]))
        results = {tracker.name: tracker.result() for tracker in self.loss_trackers}
        if _is_multi_worker(tf.distribute.get_strategy()):
            # Keras 3 averages per-replica logs over several workers with a reduction along axis 0,
            # which a scalar does not have.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def train_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            total, named = self._compute_losses(x, training=True)
            scaled = self.optimizer.scale_loss(total / replicas if replicas > 1 else total)
        variables = self.trainable_weights
        gradients = tape.gradient(scaled, variables)
        decay, gradients = self._weight_decay(
            gradients, variables, self.optimizer.scale_loss(tf.constant(1.0 / replicas))
        )
        total = total + decay
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        if replicas > 1:
            gradients = _clip_like(
                self.optimizer,
                tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, [g for g, _ in pairs]
                ),
            )
            pairs = [(g / replicas, v) for g, (_, v) in zip(gradients, pairs)]
        self.optimizer.apply_gradients(pairs)
        return self._update_metrics(total, named)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 reads the shapes of a distributed first batch by averaging it over the replicas, which
        # fails on bool inputs (the gt masks); the first replica's part has the same shapes and dtypes.
        if iterator is not None and self._distribute_strategy is not None:
            strategy = self._distribute_strategy
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(batches),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def test_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        total, named = self._compute_losses(x, training=False)
        return self._update_metrics(total, named)


def _clip_like(optimizer, gradients):
    """Clip ``gradients`` (dense tensors, scaled by the optimizer's loss scale) as ``optimizer`` would.

    Reads ``clipnorm`` (per tensor), ``global_clipnorm`` or ``clipvalue`` from the optimizer (the inner
    one of a LossScaleOptimizer) and applies it to the unscaled values; returns scaled gradients.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    scale = optimizer.scale_loss(tf.constant(1.0))
    unscaled = [g / scale for g in gradients]
    if inner.clipnorm:
        unscaled = [tf.clip_by_norm(g, inner.clipnorm) for g in unscaled]
    elif inner.global_clipnorm:
        unscaled, _ = tf.clip_by_global_norm(unscaled, inner.global_clipnorm)
    elif inner.clipvalue:
        unscaled = [tf.clip_by_value(g, -inner.clipvalue, inner.clipvalue) for g in unscaled]
    return [g * scale for g in unscaled]


def training_strategy(config):
    """The ``tf.distribute`` strategy that training under ``config`` uses when none is given.

    ``TF_CONFIG`` set in the environment: ``MultiWorkerMirroredStrategy`` (every worker runs the same
    script; each uses all its local GPUs, or its CPU). Otherwise ``GPU_COUNT > 1``: ``MirroredStrategy``
    over the first GPU_COUNT GPUs (ValueError when fewer are visible). Otherwise None: Keras' default,
    one device. Create it before any other TensorFlow work in the process (MultiWorkerMirroredStrategy
    must configure collective ops before TensorFlow initializes its devices).
    """
    if os.environ.get("TF_CONFIG"):
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(
                f"TF_CONFIG is not valid JSON ({error}); see docs/distributed.md for its form."
            ) from None
        if not isinstance(cluster, dict) or "cluster" not in cluster or "task" not in cluster:
            raise ValueError(
                'TF_CONFIG must be a JSON object with "cluster" and "task" keys, e.g. '
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.GPU_COUNT > 1:
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < config.GPU_COUNT:
            raise ValueError(
                f"GPU_COUNT={config.GPU_COUNT} but TensorFlow sees {len(gpus)} GPU(s); set "
                "GPU_COUNT to the number of GPUs to train on (1 for one device)."
            )
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus[: config.GPU_COUNT]])
    return None


def _is_multi_worker(strategy):
    """True when ``strategy`` spans several worker processes (a TF_CONFIG cluster of 2+ tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return False
    cluster = resolver.cluster_spec().as_dict()
    return len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1


def is_chief(strategy):
    """True unless ``strategy`` is a multi-worker strategy and this process is not its chief (worker 0).

    Only the chief writes checkpoints and TensorBoard logs.
    """
    if not _is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def shared_seed(strategy):
    """A random seed that every worker of ``strategy`` agrees on (the chief's), as a Python int.

    Multi-worker training needs the same input order on every worker (each takes its slice of each
    global batch). Without a multi-worker strategy: a fresh random seed.
    """
    seed = int(np.random.SeedSequence().entropy % (2**31))
    if not _is_multi_worker(strategy):
        return seed
    mine = seed if is_chief(strategy) else 0

    def contribution():
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        return tf.where(first, tf.constant(mine, tf.int64), tf.constant(0, tf.int64))

    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(contribution), axis=None)
    return int(total.numpy())


def warn_if_bf16_is_slow() -> bool:
    """Warn (and return True) when no GPU is visible and the CPU has no bf16 instructions that oneDNN may
    use: mixed_bfloat16 is then emulated and slower than float32."""
    from mrcnn.kernels import cpu

    if tf.config.list_logical_devices("GPU") or cpu.has_bf16() is not False:
        return False
    warnings.warn(
        "MIXED_PRECISION='mixed_bfloat16' on a CPU without bf16 instructions (AVX-512 BF16 or AMX; or "
        "ONEDNN_MAX_CPU_ISA caps them away): bfloat16 is emulated here and slower than float32. "
        "Use MIXED_PRECISION = None.",
        stacklevel=4,
    )
    return True


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Make ``policy`` (e.g. "mixed_bfloat16") Keras' global dtype policy inside the block, then restore.

    Layers take the global policy when they are created, so a model built in the block keeps the
    policy and models built elsewhere are unaffected. None leaves the current policy as it is.
    """
    if policy is None:
        yield
        return
    if policy == "mixed_bfloat16":
        warn_if_bf16_is_slow()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training when any loss becomes NaN or infinite, naming the loss.

    Checked at the end of each batch; the checkpoint of the last finished epoch stays the newest file.
    """

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if isinstance(value, (float, int, np.floating)) and not math.isfinite(float(value)):
                self.model.stop_training = True
                raise FloatingPointError(
                    f"Training stopped: {name} became {value} at batch {batch}. The last complete "
                    "checkpoint is kept. Lower the learning rate, check the data (boxes, masks) or "
                    "raise GRADIENT_CLIP_NORM's strictness."
                )


class HDF5Checkpoint(keras.callbacks.Callback):
    """Save weights at each epoch end in Matterport's HDF5 layout, atomically.

    ``path_template`` contains ``{epoch:04d}``; it is filled with epoch + 1 (1-based file numbers).
    ``save_fn(keras_model, path)`` writes the file (temp file + rename).
    """

    def __init__(self, path_template, save_fn, keras_model):
        super().__init__()
        self.path_template = path_template
        self.save_fn = save_fn
        self.target_model = keras_model

    def on_epoch_end(self, epoch, logs=None):
        path = self.path_template.format(epoch=epoch + 1)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.save_fn(self.target_model, path)


class StopAfterMinutes(keras.callbacks.Callback):
    """Stop training once ``minutes`` of wall-clock time have passed since training began.

    Checked after every batch; Keras then ends the epoch early and the epoch-end callbacks (checkpoint)
    still run, so the time-limited run keeps its last weights.
    """

    def __init__(self, minutes):
        super().__init__()
        self.seconds = float(minutes) * 60.0
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start >= self.seconds:
            self.model.stop_training = True


############################################################
#  One training run: what MaskRCNN.train puts together
############################################################

# Layer-name regexes of the train(layers=...) presets (full match against layer names).
_HEADS = r"(mrcnn_.*)|(rpn_.*)|(fpn_.*)"
LAYER_PRESETS = {
    "heads": _HEADS,
    "3+": r"(res[3-5].*)|(bn[3-5].*)|" + _HEADS,
    "4+": r"(res[4-5].*)|(bn[4-5].*)|" + _HEADS,
    "5+": r"(res5.*)|(bn5.*)|" + _HEADS,
    "all": ".*",
}


def build_optimizer(config, learning_rate: float, momentum: float) -> keras.optimizers.Optimizer:
    """SGD with momentum and per-tensor gradient clipping at ``config.GRADIENT_CLIP_NORM``
    (``mrcnn.kernels.momentum_sgd``: Keras' SGD update, fused on CPU). With MIXED_PRECISION "mixed_float16"
    it is wrapped in a ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling; bfloat16 needs
    none). Create it in the strategy's scope."""
    optimizer = kernels.momentum_sgd(learning_rate, momentum, config.GRADIENT_CLIP_NORM)
    if config.MIXED_PRECISION == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def training_sequences(
    config,
    train_dataset,
    val_dataset,
    strategy,
    augmentation=None,
    no_augmentation_sources=None,
    workers: int | None = None,
) -> tuple[MaskRCNNSequence, MaskRCNNSequence]:
    """The training and validation inputs of one run: ``MaskRCNNSequence``s of the global batch
    (IMAGES_PER_GPU x the strategy's replicas), STEPS_PER_EPOCH and VALIDATION_STEPS long, with a seed every
    worker of ``strategy`` agrees on. ``workers``: input threads (default: up to 4)."""
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 1)))
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    batch_size = config.IMAGES_PER_GPU * replicas
    seed = shared_seed(strategy)
    train_data = MaskRCNNSequence(
        train_dataset,
        config,
        shuffle=True,
        augmentation=augmentation,
        no_augmentation_sources=no_augmentation_sources,
        batch_size=batch_size,
        steps=config.STEPS_PER_EPOCH,
        workers=workers,
        seed=seed,
    )
    val_data = MaskRCNNSequence(
        val_dataset,
        config,
        shuffle=True,
        batch_size=batch_size,
        steps=config.VALIDATION_STEPS,
        workers=workers,
        seed=seed + 1,
    )
    return train_data, val_data


def training_callbacks(
    config, keras_model, log_dir, checkpoint_path, strategy, custom_callbacks=None
) -> list:
    """Callbacks of one run: TensorBoard and an HDF5 checkpoint per epoch (chief only), a stop on a
    non-finite loss, then ``custom_callbacks``. Callbacks with a ``use_training_config(config)`` method
    (``mrcnn.evaluate.EvaluationCallback``) get the run's config here; nothing is attached to the Keras
    model."""
    callbacks = [StopOnNonFiniteLoss()]
    if is_chief(strategy):
        callbacks = [
            keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False),
            HDF5Checkpoint(checkpoint_path, save_weights_hdf5, keras_model),
        ] + callbacks
    for callback in custom_callbacks or []:
        if hasattr(callback, "use_training_config"):
            callback.use_training_config(config)
        callbacks.append(callback)
    return callbacks
