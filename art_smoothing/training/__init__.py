"""Trainers for smoothed classifiers (ART ``Trainer`` subclasses), for every noise."""

from art_smoothing.training.augmentation import NoiseAugmentationTrainer, SmoothingTrainer

__all__ = ["NoiseAugmentationTrainer", "SmoothingTrainer"]
