"""Random streams of the smoothing engine: every draw comes from a generator seeded by ``(seed, stage, keys)``.

CERTIFY's guarantee is per input: one input's draws must be i.i.d. and the selection draws independent
of the estimation draws. Nothing requires independence across inputs, so the noise of a stage is one
stream cut into blocks, block ``j`` drawn from the generator of ``(seed, stage, j)``, and every input
reuses the same blocks: drawing noise then costs a vanishing share of the forward passes, and an input's
votes do not depend on its neighbours, on batching or on how inputs are split across workers. The block
layout depends on the input dimension only (:func:`block_size`).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

__all__ = [
    "BLOCK_ELEMENTS",
    "GROUP_ELEMENTS",
    "MAX_BLOCK",
    "STAGE_ESTIMATE",
    "STAGE_FIT",
    "STAGE_GRADIENT",
    "STAGE_PREDICT",
    "STAGE_SELECT",
    "Stage",
    "block_size",
    "NoiseBlocks",
    "generator",
    "group_size",
    "stream_seed",
]


class Stage(IntEnum):
    """What a stream's draws are for; different stages never share a generator."""

    SELECT = 0  #: CERTIFY's n0 selection draws (choose c_A)
    ESTIMATE = 1  #: CERTIFY's n estimation draws (bound p_A)
    PREDICT = 2  #: PREDICT's draws (and the attacks' flip checks)
    FIT = 3  #: training draws
    GRADIENT = 4  #: EOT draws of gradients and attacks
    RANDOMIZE = 5  #: auxiliary uniforms of randomized confidence bounds


STAGE_SELECT, STAGE_ESTIMATE, STAGE_PREDICT, STAGE_FIT, STAGE_GRADIENT = (
    Stage.SELECT, Stage.ESTIMATE, Stage.PREDICT, Stage.FIT, Stage.GRADIENT)

#: at most this many noise elements per drawn block (64 MiB in float32); depends on the input
#: dimension only, so the stream layout never depends on batch size or partitioning.
BLOCK_ELEMENTS = 1 << 24
#: at most this many draws per block
MAX_BLOCK = 4096
#: at most this many input elements are moved to the device at once.
GROUP_ELEMENTS = 1 << 24


def stream_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the generator of stream ``keys`` derived from the user's ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *[int(k) for k in keys]]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def generator(device: torch.device | str, seed: int, *keys: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded for the stream ``(seed, *keys)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, *keys))
    return gen


def block_size(dim: int) -> int:
    """Draws per block of a stream for inputs of ``dim`` features."""
    return max(1, min(MAX_BLOCK, BLOCK_ELEMENTS // max(1, int(dim))))


def group_size(n_inputs: int, dim: int) -> int:
    """Inputs moved to the device together (a memory bound; votes do not depend on it)."""
    return max(1, min(max(int(n_inputs), 1), GROUP_ELEMENTS // max(1, int(dim))))


class NoiseBlocks:
    """The blocks of one noise stream ``(seed, stage)`` of ``total`` draws, drawn on demand and the last one
    kept: block j holds draws ``j·B ≤ i < min((j + 1)·B, total)`` (B = ``engine.block_size()``) from the
    generator of ``(seed, stage, j)``. Its size depends on ``total`` — a stream of ``total`` draws is cut
    the same way however much of it is read — so the first t draws of a sequential run are those of fixed-n
    CERTIFY with n = ``total``."""

    def __init__(self, engine, stage: Stage, seed: int, total: int):
        self.engine, self.stage, self.seed, self.total = engine, stage, seed, int(total)
        self._index: int | None = None
        self._block: torch.Tensor | None = None

    def block(self, j: int) -> torch.Tensor:
        if j != self._index:
            size = self.engine.block_size()
            self._block = self.engine.sample_noise(min(size, self.total - j * size),
                                                   self.engine.generator(self.seed, self.stage, j))
            self._index = j
        return self._block
