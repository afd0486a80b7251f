"""The five Mask R-CNN training losses, as plain TensorFlow functions on tf.Tensors.

Each returns a float32 scalar and returns 0 (never NaN) when there is nothing to average, so an image
batch without positives still gives finite values and gradients. Inputs of any float dtype are cast to
float32. Call them from a train_step, not on KerasTensors.

Under ``tf.distribute`` (a replica context with N > 1 replicas) each loss is a mean over the *global*
batch: the number of terms averaged is summed over the replicas, and each replica returns
``N * local_sum / global_count``. The Keras convention (each replica's loss divided by N, gradients
summed across replicas) then gives exactly the loss and gradient of one device on the global batch,
even when the replicas hold different numbers of positives; the mean of the replicas' values is the
global-batch loss.
"""

import keras
import tensorflow as tf

from mrcnn.graph_ops import Float32Layer
from mrcnn.transform.image_meta import meta_field

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")


def batch_mean(total, count):
    """``total / count`` (0 when count is 0), the count taken over the global batch under tf.distribute.

    total: float32 scalar, the sum of this replica's terms; count: float32 scalar, how many terms.
    With N > 1 replicas in sync, ``count`` is all-reduced (summed) over the replicas and the result is
    ``N * total / global_count``: see the module docstring. Outside a replica context, or with one
    replica, this is the plain mean.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
        total = total * float(replicas)
    return tf.math.divide_no_nan(total, count)


def _mean_or_zero(values):
    """Mean of all elements of ``values`` over the (global) batch; 0 when there are none."""
    return batch_mean(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))


def smooth_l1_loss(y_true, y_pred):
    """Elementwise smooth L1: 0.5 * d**2 where |d| < 1, else |d| - 0.5, with d = y_true - y_pred."""
    diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)


def rpn_class_loss_graph(rpn_match, rpn_class_logits):
    """RPN foreground/background cross-entropy over non-neutral anchors, averaged.

    rpn_match: [B, A, 1] (or [B, A]) int, 1 = positive, -1 = negative, 0 = neutral (ignored).
    rpn_class_logits: [B, A, 2] logits (background, foreground).
    """
    rpn_match = tf.cast(rpn_match, tf.int32)
    if rpn_match.shape.rank == 3:
        rpn_match = tf.squeeze(rpn_match, axis=-1)
    indices = tf.where(tf.not_equal(rpn_match, 0))
    labels = tf.cast(tf.equal(tf.gather_nd(rpn_match, indices), 1), tf.int32)
    logits = tf.gather_nd(tf.cast(rpn_class_logits, tf.float32), indices)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return _mean_or_zero(loss)


def rpn_bbox_loss_graph(config, target_bbox, rpn_match, rpn_bbox):
    """RPN box regression: smooth L1 over the positive anchors, averaged over their 4 * n values.

    target_bbox: [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4], each image's positive-anchor deltas packed first,
        in anchor order (as ``build_rpn_targets`` writes them).
    rpn_match: [B, A, 1] (or [B, A]) int; rpn_bbox: [B, A, 4] predicted deltas.
    config: kept for Matterport's signature; the batch size is read from the tensors, so it may be unknown.
    The k-th positive anchor of an image (in anchor order) is matched to row k of its target_bbox;
    positives beyond the number of target rows are ignored.
    """
    rpn_match = tf.cast(rpn_match, tf.int32)
    if rpn_match.shape.rank == 3:
        rpn_match = tf.squeeze(rpn_match, axis=-1)
    positive = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    ordinal = tf.cumsum(positive, axis=1, exclusive=True)
    target_rows = tf.shape(target_bbox)[1]
    indices = tf.where(tf.logical_and(positive > 0, ordinal < target_rows))
    pred = tf.gather_nd(tf.cast(rpn_bbox, tf.float32), indices)
    target_indices = tf.stack([indices[:, 0], tf.cast(tf.gather_nd(ordinal, indices), tf.int64)], axis=1)
    target = tf.gather_nd(tf.cast(target_bbox, tf.float32), target_indices)
    return _mean_or_zero(smooth_l1_loss(target, pred))


def mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier cross-entropy over all RoIs (padding RoIs count, as background, as in Matterport).

    target_class_ids: [B, T] int (float accepted); pred_class_logits: [B, T, N] logits;
    active_class_ids: [B, N], 1 for the classes of each image's dataset, else 0.

    A RoI's loss is dropped when its *predicted* class (argmax of the logits) is not active in its own
    image, and the sum is divided by the number of RoIs kept (0 when none). Fix of a Matterport quirk:
    Matterport looks the predicted class up in row 0 of active_class_ids for the whole batch; here each
    image uses its own row, which matters when a batch mixes datasets.
    """
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    logits = tf.cast(pred_class_logits, tf.float32)
    pred_class_ids = tf.argmax(logits, axis=2, output_type=tf.int32)
    pred_active = tf.gather(tf.cast(active_class_ids, tf.float32), pred_class_ids, axis=1, batch_dims=1)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_class_ids, logits=logits)
    return batch_mean(tf.reduce_sum(loss * pred_active), tf.reduce_sum(pred_active))


def _positive_class_indices(target_class_ids):
    """[n, 2] (flat RoI index, class id) of the RoIs whose target class is > 0."""
    class_ids = tf.reshape(tf.cast(target_class_ids, tf.int32), [-1])
    positive = tf.where(class_ids > 0)[:, 0]
    return tf.stack([tf.cast(positive, tf.int32), tf.gather(class_ids, positive)], axis=1), positive


def mrcnn_bbox_loss_graph(target_bbox, target_class_ids, pred_bbox):
    """Box head smooth L1 on positive RoIs, using only the deltas predicted for the true class.

    target_bbox: [B, T, 4]; target_class_ids: [B, T] int; pred_bbox: [B, T, N, 4].
    Averaged over the 4 * n_positive values; 0 when there is no positive RoI.
    """
    indices, positive = _positive_class_indices(target_class_ids)
    target = tf.gather(tf.reshape(tf.cast(target_bbox, tf.float32), [-1, 4]), positive)
    pred_bbox = tf.cast(pred_bbox, tf.float32)
    pred = tf.gather_nd(tf.reshape(pred_bbox, [-1, tf.shape(pred_bbox)[2], 4]), indices)
    return _mean_or_zero(smooth_l1_loss(target, pred))


def mrcnn_mask_loss_graph(target_masks, target_class_ids, pred_masks):
    """Mask head binary cross-entropy on positive RoIs, using only the true class's mask.

    target_masks: [B, T, h, w] in {0, 1}; target_class_ids: [B, T] int; pred_masks: [B, T, h, w, N]
    probabilities (sigmoid output), clipped to [eps, 1 - eps] with eps = keras.config.epsilon().
    Averaged over all pixels of the positive RoIs; 0 when there is no positive RoI.
    """
    indices, positive = _positive_class_indices(target_class_ids)
    pred_masks = tf.cast(pred_masks, tf.float32)
    shape = tf.shape(pred_masks)
    # [B * T, N, h, w] so that (roi, class) picks one mask.
    pred = tf.transpose(tf.reshape(pred_masks, [-1, shape[2], shape[3], shape[4]]), [0, 3, 1, 2])
    pred = tf.gather_nd(pred, indices)
    target_masks = tf.cast(target_masks, tf.float32)
    target = tf.gather(tf.reshape(target_masks, [-1, shape[2], shape[3]]), positive)
    eps = keras.config.epsilon()
    pred = tf.clip_by_value(pred, eps, 1.0 - eps)
    loss = -(target * tf.math.log(pred) + (1.0 - target) * tf.math.log(1.0 - pred))
    return _mean_or_zero(loss)


############################################################
#  Loss layers: the training graph ends in these, one per loss
############################################################


@keras.saving.register_keras_serializable(package="mrcnn")
class RPNClassLoss(Float32Layer):
    """Inputs [rpn_match [B, A, 1], rpn_class_logits [B, A, 2]] -> scalar loss."""

    def call(self, inputs):
        rpn_match, rpn_class_logits = inputs
        return rpn_class_loss_graph(rpn_match, rpn_class_logits)

    def compute_output_shape(self, input_shape):
        return ()


@keras.saving.register_keras_serializable(package="mrcnn")
class RPNBboxLoss(Float32Layer):
    """Inputs [target_bbox [B, T, 4], rpn_match [B, A, 1], rpn_bbox [B, A, 4]] -> scalar loss."""

    def call(self, inputs):
        target_bbox, rpn_match, rpn_bbox = inputs
        return rpn_bbox_loss_graph(None, target_bbox, rpn_match, rpn_bbox)

    def compute_output_shape(self, input_shape):
        return ()


@keras.saving.register_keras_serializable(package="mrcnn")
class MrcnnClassLoss(Float32Layer):
    """Inputs [target_class_ids [B, T], class_logits [B, T, N], image_meta [B, META]] -> scalar loss."""

    def call(self, inputs):
        target_class_ids, pred_class_logits, image_meta = inputs
        active_class_ids = meta_field(image_meta, "active_class_ids")
        return mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids)

    def compute_output_shape(self, input_shape):
        return ()


@keras.saving.register_keras_serializable(package="mrcnn")
class MrcnnBboxLoss(Float32Layer):
    """Inputs [target_bbox [B, T, 4], target_class_ids [B, T], pred_bbox [B, T, N, 4]] -> scalar loss."""

    def call(self, inputs):
        return mrcnn_bbox_loss_graph(*inputs)

    def compute_output_shape(self, input_shape):
        return ()


@keras.saving.register_keras_serializable(package="mrcnn")
class MrcnnMaskLoss(Float32Layer):
    """Inputs [target_mask [B, T, h, w], target_class_ids [B, T], pred_masks [B, T, h, w, N]] -> scalar."""

    def call(self, inputs):
        return mrcnn_mask_loss_graph(*inputs)

    def compute_output_shape(self, input_shape):
        return ()
