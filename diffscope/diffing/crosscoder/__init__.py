"""Crosscoders over paired (base, fine-tuned) activations: model, training, analysis."""

from diffscope.diffing.crosscoder.activations import (
    ActivationSource,
    ShardedActivations,
    TensorActivations,
    write_activation_shards,
)
from diffscope.diffing.crosscoder.analysis import (
    CrosscoderMetrics,
    LatentClasses,
    LatentScaling,
    TopActivations,
    classify_decoder_norms,
    evaluate,
    latent_classes,
    latent_scaling,
    top_activations,
)
from diffscope.diffing.crosscoder.model import Crosscoder, CrosscoderConfig
from diffscope.diffing.crosscoder.train import train_crosscoder

__all__ = [
    "ActivationSource",
    "Crosscoder",
    "CrosscoderConfig",
    "CrosscoderMetrics",
    "LatentClasses",
    "LatentScaling",
    "ShardedActivations",
    "TensorActivations",
    "TopActivations",
    "classify_decoder_norms",
    "evaluate",
    "latent_classes",
    "latent_scaling",
    "top_activations",
    "train_crosscoder",
    "write_activation_shards",
]
