"""Trainers for smoothed classifiers (ART ``Trainer`` subclasses), for every noise.

Each takes a :class:`~art_smoothing.SmoothedClassifier` and trains its base model under that estimator's
own noise; the constructor keyword arguments listed in ``trainer_params`` are the trainer's
hyperparameters (what the CLI passes):

* ``augment`` — :class:`NoiseAugmentationTrainer` (Cohen et al., 2019), no hyperparameters;
* ``consistency`` — :class:`ConsistencyTrainer` (Jeong & Shin, 2020): ``m``, ``lbd``, ``eta``;
* ``macer`` — :class:`MACERTrainer` (Zhai et al., 2020): ``m``, ``lbd``, ``gamma``, ``beta``, ``norm``, ``method``;
* ``smoothadv`` — :class:`SmoothAdvTrainer` (Salman et al., 2019): ``epsilon``, ``m``, ``num_steps``,
  ``warmup``, ``norm``, ``step_size``, ``l1_top_fraction``.
"""

from art_smoothing.training.augmentation import NoiseAugmentationTrainer, SmoothingTrainer
from art_smoothing.training.consistency import ConsistencyTrainer
from art_smoothing.training.macer import MACERTrainer
from art_smoothing.training.smoothadv import SmoothAdvTrainer

#: CLI name -> trainer class (``art-smoothing train --trainer NAME``)
TRAINERS = {
    "augment": NoiseAugmentationTrainer,
    "consistency": ConsistencyTrainer,
    "macer": MACERTrainer,
    "smoothadv": SmoothAdvTrainer,
}

__all__ = [
    "TRAINERS",
    "ConsistencyTrainer",
    "MACERTrainer",
    "NoiseAugmentationTrainer",
    "SmoothAdvTrainer",
    "SmoothingTrainer",
]
