"""Trainers for smoothed classifiers (ART ``Trainer`` subclasses), for every noise.

Each takes a :class:`~art_smoothing.SmoothedClassifier` and trains its base model under that estimator's
own noise; the constructor keyword arguments listed in ``trainer_params`` are the trainer's
hyperparameters (what the CLI passes):

* ``augment`` — :class:`NoiseAugmentationTrainer` (Cohen et al., 2019), no hyperparameters;
* ``consistency`` — :class:`ConsistencyTrainer` (Jeong & Shin, 2020): ``m``, ``lbd``, ``eta``;
* ``macer`` — :class:`MACERTrainer` (Zhai et al., 2020): ``m``, ``lbd``, ``gamma``, ``beta``, ``norm``, ``method``,
  ``warmup``;
* ``smoothadv`` — :class:`SmoothAdvTrainer` (Salman et al., 2019): ``epsilon``, ``m``, ``num_steps``,
  ``warmup``, ``norm``, ``step_size``, ``l1_top_fraction``;
* ``smoothmix`` — :class:`SmoothMixTrainer` (Jeong et al., 2021): ``eta``, ``m``, ``num_steps``, ``step_size``,
  ``warmup``, ``mix_step``, ``maxnorm``, ``maxnorm_s``, ``norm``, ``l1_top_fraction``.

Defaults that depend on the noise are expressed in units of its standard deviation and were chosen by
``benchmarks/training.py --sweep``; ``docs/training.md`` records the grid, the winners and the measured gains.
"""

from art_smoothing.training.augmentation import NoiseAugmentationTrainer, SmoothingTrainer
from art_smoothing.training.consistency import ConsistencyTrainer
from art_smoothing.training.macer import MACERTrainer
from art_smoothing.training.smoothadv import SmoothAdvTrainer
from art_smoothing.training.smoothmix import SmoothMixTrainer

#: CLI name -> trainer class (``art-smoothing train --trainer NAME``)
TRAINERS = {
    "augment": NoiseAugmentationTrainer,
    "consistency": ConsistencyTrainer,
    "macer": MACERTrainer,
    "smoothadv": SmoothAdvTrainer,
    "smoothmix": SmoothMixTrainer,
}

__all__ = [
    "TRAINERS",
    "ConsistencyTrainer",
    "MACERTrainer",
    "NoiseAugmentationTrainer",
    "SmoothAdvTrainer",
    "SmoothMixTrainer",
    "SmoothingTrainer",
]
