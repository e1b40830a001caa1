"""Smoothing distributions: one class per noise, each with its exact sampler and its certificates."""

from art_smoothing.noise.base import CertificateContext, CertificateSpec, Noise, certificate
from art_smoothing.noise.gaussian import GaussianNoise
from art_smoothing.noise.generalized_gaussian import GeneralizedGaussianNoise
from art_smoothing.noise.laplace import LaplaceNoise
from art_smoothing.noise.mixed_norm import MixedNormNoise
from art_smoothing.noise.power_law import PowerLawNoise
from art_smoothing.noise.splitting import DeterministicSplittingNoise, SplittingNoise
from art_smoothing.noise.uniform import UniformNoise

__all__ = [
    "Noise",
    "certificate",
    "CertificateSpec",
    "CertificateContext",
    "GaussianNoise",
    "GeneralizedGaussianNoise",
    "LaplaceNoise",
    "UniformNoise",
    "PowerLawNoise",
    "MixedNormNoise",
    "SplittingNoise",
    "DeterministicSplittingNoise",
]
