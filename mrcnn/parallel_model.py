"""Matterport's ``mrcnn.parallel_model``, kept so that scripts importing it still run.

Matterport trained on several GPUs by wrapping the Keras model in ``ParallelModel``, which split every
batch across the GPUs itself. mrcnn does this with ``tf.distribute`` instead: ``GPU_COUNT = n`` in the
config makes ``MaskRCNN`` build and train its model under ``tf.distribute.MirroredStrategy`` over GPUs
0..n-1 (``IMAGES_PER_GPU`` images each), and ``MaskRCNN(..., strategy=s)`` takes any other strategy
(``TF_CONFIG`` selects ``MultiWorkerMirroredStrategy``); checkpoints keep the single-model layout, as
Matterport's did. See docs/distributed.md. A model cannot be wrapped into a strategy after it was built
(its variables must be created under the strategy), so ``ParallelModel`` itself raises and says so.
"""

from __future__ import annotations

__all__ = ["ParallelModel"]


class ParallelModel:
    """Matterport's multi-GPU wrapper ``ParallelModel(keras_model, gpu_count)``: replaced by tf.distribute.

    Constructing it raises RuntimeError naming what to do instead (``GPU_COUNT`` or ``strategy=``);
    importing the class works, so Matterport-era scripts that only import it run unchanged.
    """

    def __init__(self, keras_model, gpu_count: int) -> None:
        raise RuntimeError(
            f"ParallelModel(keras_model, {gpu_count}) is not needed with mrcnn: multi-GPU training runs on "
            f"tf.distribute. Set GPU_COUNT = {gpu_count} in your Config before creating the model "
            "(MaskRCNN then builds and trains it under tf.distribute.MirroredStrategy over that many GPUs), "
            "or pass MaskRCNN(mode, config, model_dir, strategy=tf.distribute.MirroredStrategy()); use "
            "model.keras_model as it is. See docs/distributed.md."
        )
