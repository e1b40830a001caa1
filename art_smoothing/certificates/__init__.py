"""Certificate machinery shared by all noises: norms and their sound conversion, confidence bounds, box
geometry, divergences and the variational engine (one module each; nothing here imports a noise)."""

from art_smoothing.certificates.norms import conversion_factor, dual_norm, norm_name, parse_norm

__all__ = ["conversion_factor", "dual_norm", "norm_name", "parse_norm"]
