"""Loading a base model and its fine-tune as one pair, and reaching their activations."""

from diffscope.models.batching import Batch
from diffscope.models.families import FAMILIES, Family, family_for
from diffscope.models.hooks import Captured, add_to_residual, capture
from diffscope.models.pair import ModelPair, PairLoadError, weights_fingerprint

__all__ = [
    "FAMILIES",
    "Batch",
    "Captured",
    "Family",
    "ModelPair",
    "PairLoadError",
    "add_to_residual",
    "capture",
    "family_for",
    "weights_fingerprint",
]
