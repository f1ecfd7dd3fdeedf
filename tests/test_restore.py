"""A restore takes every weight of the model from the checkpoint, or refuses: a model built with
other layers than the run that saved it must never keep some of its fresh weights silently."""

import pytest

from trainer.errors import UserError


def _model(with_dropout: bool):
    import keras

    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(3)(inputs)
    if with_dropout:  # Shifts the layers after it, as --dropout > 0 does in every model here.
        hidden = keras.layers.Dropout(0.1)(hidden)
    return keras.Model(inputs, keras.layers.Dense(2)(hidden))


def _checkpoints(model_dir, model):
    import tensorflow as tf

    from trainer import checkpoint

    step = tf.Variable(0, dtype=tf.int64)
    return checkpoint.Checkpoints(str(model_dir), True, 2, model=model, step=step), step


def test_a_checkpoint_without_every_model_weight_is_refused(tmp_path):
    import numpy as np

    saved_model = _model(with_dropout=False)
    saver, step = _checkpoints(tmp_path, saved_model)
    step.assign(7)
    saver.save(7)

    same = _model(with_dropout=False)
    restorer, restored_step = _checkpoints(tmp_path, same)
    assert restorer.restore_latest() and int(restored_step.numpy()) == 7
    for mine, theirs in zip(same.weights, saved_model.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    other, _ = _checkpoints(tmp_path, _model(with_dropout=True))
    with pytest.raises(UserError, match="no checkpoint in .* could be restored .* differ from the run that wrote them"):
        other.restore_latest()
