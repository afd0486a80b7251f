"""Running the inference graph: molded batches in, per-image detections out.

``Detector`` holds what ``MaskRCNN.detect`` needs between calls: one ``tf.function`` with a fixed
signature (so calls with new image sizes or counts never retrace) and the anchors of each molded shape.
It groups molded images by shape, runs BATCH_SIZE of them at a time and un-molds each image's result
with the model's ``unmold_detections``. Pre- and post-processing live in ``mrcnn.transform``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import tensorflow as tf


class Detector:
    """Batched inference for an inference-mode Keras model.

    keras_model: the graph of ``mrcnn.graph.build_inference_graph``; config: its Config; anchors_for:
    molded image shape -> normalized anchors [A, 4]; unmold: ``MaskRCNN.unmold_detections`` (a subclass
    may override it); log: Matterport's ``log(text, array)`` for verbose output.
    """

    def __init__(self, keras_model, config, anchors_for: Callable, unmold: Callable, log: Callable):
        self.keras_model = keras_model
        self.config = config
        self.anchors_for = anchors_for
        self.unmold = unmold
        self.log = log
        self._function = None

    def run(self, molded_images, image_metas, anchors) -> list[np.ndarray]:
        """The graph's seven outputs (numpy) for one batch: molded_images float32 [B, H, W, C],
        image_metas float32 [B, META], anchors float32 [B, A, 4] normalized."""
        if self._function is None:
            model = self.keras_model
            spec = [
                tf.TensorSpec([None, None, None, int(self.config.IMAGE_CHANNEL_COUNT)], tf.float32),
                tf.TensorSpec([None, int(self.config.IMAGE_META_SIZE)], tf.float32),
                tf.TensorSpec([None, None, 4], tf.float32),
            ]

            @tf.function(input_signature=spec, autograph=False)
            def infer(images, metas, anchors):
                return model([images, metas, anchors], training=False)

            self._function = infer
        outputs = self._function(tf.constant(molded_images), tf.constant(image_metas), tf.constant(anchors))
        return [o.numpy() for o in outputs]

    def detect_molded_batches(self, images, molded_images, image_metas, windows, verbose=0) -> list[dict]:
        """Detections for each of ``images`` (the originals, for their shapes) from their molded forms.

        molded_images: [H, W, C] float32 arrays (any sizes; grouped by shape), image_metas: [META] each,
        windows: [4] each. Returns one dict per image: rois int32 [N, 4] original pixels (exclusive
        y2/x2), class_ids int32 [N], scores float32 [N], masks bool [H, W, N].
        """
        results = [None] * len(images)
        by_shape = OrderedDict()
        for index, molded in enumerate(molded_images):
            by_shape.setdefault(molded.shape, []).append(index)
        batch = max(1, int(self.config.BATCH_SIZE))
        for shape, indices in by_shape.items():
            anchors = self.anchors_for(shape)
            for start in range(0, len(indices), batch):
                chunk = indices[start : start + batch]
                chunk_images = np.stack([molded_images[i] for i in chunk]).astype(np.float32)
                chunk_metas = np.stack([image_metas[i] for i in chunk]).astype(np.float32)
                chunk_anchors = np.broadcast_to(anchors, (len(chunk),) + anchors.shape)
                if verbose:
                    self.log("molded_images", chunk_images)
                    self.log("image_metas", chunk_metas)
                    self.log("anchors", chunk_anchors)
                detections, _, _, mrcnn_mask, _, _, _ = self.run(chunk_images, chunk_metas, chunk_anchors)
                for row, index in enumerate(chunk):
                    rois, class_ids, scores, masks = self.unmold(
                        detections[row],
                        mrcnn_mask[row],
                        images[index].shape,
                        molded_images[index].shape,
                        windows[index],
                    )
                    results[index] = {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}
        return results
