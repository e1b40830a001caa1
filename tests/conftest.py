"""Shared fixtures: real ART classifiers around small real PyTorch models."""

import numpy as np
import pytest
import torch
from hypothesis import settings

# Property tests run with a fixed derivation of their examples (no random seed per run, no example
# database), so a CI run is reproducible; a failure found locally is replayed by the same examples.
settings.register_profile("art_smoothing", derandomize=True, database=None)
settings.load_profile("art_smoothing")
from torch import nn

from art_smoothing.data import load_digits_dataset
from art_smoothing.models import DigitsCNN, make_classifier


class LinearTwoClass(nn.Module):
    """Logits (0, w·x + b): class 1 iff w·x + b > 0 — a classifier with a known robust radius."""

    def __init__(self, w, b):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(-1))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x):
        s = x.reshape(x.shape[0], -1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


def linear_classifier(w, b, clip_values=None, **kwargs):
    model = LinearTwoClass(w, b)
    return make_classifier(model, (len(w),), 2, clip_values=clip_values, **kwargs)


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="session")
def digits_classifier_factory():
    def make(seed=0, **kwargs):
        torch.manual_seed(seed)
        return make_classifier(DigitsCNN(width=8), (1, 8, 8), 10, **kwargs)

    return make


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op thread synchronisation costs more than it saves, and CI's two cores are
    shared with Ray workers in some modules. Restored after each module."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
