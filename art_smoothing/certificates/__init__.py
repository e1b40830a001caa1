"""Certificate machinery shared by all noises: norms, confidence bounds (and, later, box geometry,
divergences and the variational engine)."""

from art_smoothing.certificates.norms import conversion_factor, dual_norm, norm_name, parse_norm

__all__ = ["conversion_factor", "dual_norm", "norm_name", "parse_norm"]
