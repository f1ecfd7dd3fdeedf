"""Optimizers, the learning-rate schedule, and loss scaling for mixed_float16.

The step all-reduces gradients itself, before anything looks at them, so that global-norm
clipping and the loss-scale finite check see the global gradient (Keras clips and checks
per replica before its own all-reduce). The optimizers below therefore skip Keras's
all-reduce; everything else (update rule, weight decay, loss scaling) is stock Keras.
"""

import keras

from trainer.config import TrainConfig


class _PreReducedGradients:
    """Gradients arrive already summed across replicas: Keras must not sum them again."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class _LayerRates:
    """Optional per-variable learning-rate factors (hub_text's --layer_decay; set_rate_factors)."""

    rate_factors = None  # One float per trainable variable, in the order the optimizer was built with.

    def update_step(self, gradient, variable, learning_rate):
        if self.rate_factors is not None:
            learning_rate = learning_rate * self.rate_factors[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, learning_rate)


class AdamW(_PreReducedGradients, _LayerRates, keras.optimizers.AdamW):
    pass


class Adam(_PreReducedGradients, _LayerRates, keras.optimizers.Adam):
    pass


class SGD(_PreReducedGradients, _LayerRates, keras.optimizers.SGD):
    pass


def set_rate_factors(optimizer, factors) -> None:
    """Scales the learning rate of each trainable variable by its factor (None: all 1)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # Under loss scaling.
    inner.rate_factors = None if factors is None else [float(f) for f in factors]


# --optimizer: name -> class; _optimizer_args gives the keyword arguments beyond the rate.
OPTIMIZERS = {"adamw": AdamW, "adam": Adam, "sgd": SGD}


def _optimizer_args(config: TrainConfig) -> dict:
    return {"adamw": {"weight_decay": config.weight_decay}, "sgd": {"momentum": 0.9}}.get(config.optimizer, {})


class ConstantLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A constant as a schedule: Keras would store a plain float in a variable, which a resume
    restores, silently overriding a --learning_rate changed between runs."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, step):
        return self.value

    def get_config(self):
        return {"value": self.value}


# --lr_scaling: name -> the power p of (global_batch_size / base_batch_size) the rate is multiplied by.
LR_SCALINGS = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}


def peak_learning_rate(config: TrainConfig) -> float:
    """--learning_rate scaled by --lr_scaling from --base_batch_size to --global_batch_size."""
    ratio = config.global_batch_size / config.base_batch_size
    return config.learning_rate * ratio ** LR_SCALINGS[config.lr_scaling]


def _cosine(config: TrainConfig, peak: float) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from 0 to `peak`, then cosine decay to 0 at --train_steps."""
    warmup_steps = min(config.warmup_steps, config.train_steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=config.train_steps - warmup_steps,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def _constant(config: TrainConfig, peak: float) -> keras.optimizers.schedules.LearningRateSchedule:
    return ConstantLearningRate(peak)


# --lr_schedule: name -> function(config, peak rate) -> schedule.
LR_SCHEDULES = {"cosine": _cosine, "constant": _constant}


def learning_rate(config: TrainConfig) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule from the config; never checkpointed, so the flags of the current run apply."""
    return LR_SCHEDULES[config.lr_schedule](config, peak_learning_rate(config))


def make_optimizer(config: TrainConfig):
    """The optimizer, wrapped in dynamic loss scaling under mixed_float16. Create inside the strategy scope."""
    clip = {"global_clipnorm": config.clip_norm} if config.clip_norm else {}
    lr = learning_rate(config)
    optimizer = OPTIMIZERS[config.optimizer](lr, **_optimizer_args(config), **clip)
    if config.mixed_precision == "mixed_float16":
        # Keras's scaler decides from the gradients it is given; ours are already all-reduced, so
        # every replica makes the same decision.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def scale_loss(optimizer, loss):
    """The loss to differentiate: scaled under mixed_float16, else unchanged."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss
