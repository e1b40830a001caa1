"""Small PyTorch models and their ART wrappers: the bundled digits CNN (trained on demand and cached)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitsCNN", "SmallCNN", "make_classifier"]


class DigitsCNN(nn.Module):
    """A small CNN for 1×8×8 digits. ``width`` scales the channels (the "wider" benchmark model)."""

    def __init__(self, nb_classes: int = 10, width: int = 16, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, nb_classes))

    def forward(self, x):
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """A small CIFAR-shaped CNN (3×32×32): conv-pool ×2 and two linear layers."""

    def __init__(self, nb_classes: int = 10, width: int = 16, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, 128), nn.ReLU(),
                                  nn.Linear(128, nb_classes))

    def forward(self, x):
        return self.head(self.features(x))


def make_classifier(model: nn.Module, input_shape, nb_classes: int, *, clip_values=(0.0, 1.0), lr: float = 1e-3,
                    device_type: str = "cpu", **kwargs):
    """Wrap ``model`` in ART's ``PyTorchClassifier`` with cross-entropy and Adam."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), lr=lr),
        input_shape=tuple(input_shape), nb_classes=nb_classes, clip_values=clip_values, device_type=device_type,
        **kwargs,
    )
