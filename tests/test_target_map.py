"""StopAtTargetMAP: stops training at a validation mAP target, with progress and a time-left estimate."""

import types

import pytest

from mrcnn import evaluate


def _run(monkeypatch, scores, map50=0.9, map_=0.7):
    """Drive the callback through epochs whose evaluation returns ``scores`` [(mAP@0.5, mAP), ...]."""
    results = iter(scores)
    monkeypatch.setattr(
        evaluate,
        "evaluate_map",
        lambda model, dataset, verbose=0: dict(zip(("mAP@0.5", "mAP@[.5:.95]"), next(results))),
    )
    lines = []
    callback = evaluate.StopAtTargetMAP(object(), map50, map_, print_fn=lines.append)
    monkeypatch.setattr(callback, "copy_weights", lambda: None)
    callback.use_training_config(types.SimpleNamespace(BATCH_SIZE=8))
    callback.set_model(types.SimpleNamespace(stop_training=False))
    callback.on_train_begin()
    for epoch in range(len(scores)):
        callback.on_epoch_begin(epoch)
        for batch in range(10):
            callback.on_train_batch_end(batch)
        logs = {}
        callback.on_epoch_end(epoch, logs)
        if callback.model.stop_training:
            break
    return callback, lines, logs


def test_stops_when_both_targets_are_reached(monkeypatch):
    scores = [(0.2, 0.1), (0.5, 0.3), (0.8, 0.5), (0.95, 0.65), (0.95, 0.72), (0.99, 0.9)]
    callback, lines, logs = _run(monkeypatch, scores)
    assert callback.reached and callback.model.stop_training
    assert len(lines) == 5  # mAP@0.5 alone (epoch 4) does not stop it
    assert "estimate of the time left after 3 epochs" in lines[0]
    assert "under a minute left" in lines[2]  # epochs of microseconds
    assert "400 images" in lines[4] and "targets reached" in lines[4]
    assert logs == {"val_mask_mAP50": 0.95, "val_mask_mAP": 0.72}


def test_no_estimate_without_progress(monkeypatch):
    callback, lines, _ = _run(monkeypatch, [(0.3, 0.2), (0.3, 0.2), (0.3, 0.2)])
    assert not callback.reached and not callback.model.stop_training
    assert "no estimate of the time left" in lines[-1]


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_rejects_targets_outside_0_1(bad):
    with pytest.raises(ValueError, match="target mAP in"):
        evaluate.StopAtTargetMAP(object(), bad, 0.5)


def test_estimate_ignores_a_noisy_dip(monkeypatch):
    """A dip below the best so far does not stop the estimate: the best-so-far curve still rises."""
    _, lines, _ = _run(monkeypatch, [(0.5, 0.3), (0.6, 0.4), (0.7, 0.5), (0.65, 0.45)])
    assert "min left" in lines[-1] or "under a minute left" in lines[-1]
