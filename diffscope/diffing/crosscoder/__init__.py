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
from diffscope.diffing.crosscoder.artifact import (
    CrosscoderArtifact,
    base_latent_scaling,
    load_artifact,
)
from diffscope.diffing.crosscoder.capability import (
    CapabilityReport,
    capability_report,
    capability_report_async,
    taxonomy,
)
from diffscope.diffing.crosscoder.collect import collect_activations, paired_residuals
from diffscope.diffing.crosscoder.model import Crosscoder, CrosscoderConfig
from diffscope.diffing.crosscoder.pipeline import (
    activations_for_pair,
    crosscoder_config,
    train_for_pair,
)
from diffscope.diffing.crosscoder.train import train_crosscoder

__all__ = [
    "ActivationSource",
    "CapabilityReport",
    "Crosscoder",
    "CrosscoderArtifact",
    "CrosscoderConfig",
    "CrosscoderMetrics",
    "LatentClasses",
    "LatentScaling",
    "ShardedActivations",
    "TensorActivations",
    "TopActivations",
    "activations_for_pair",
    "base_latent_scaling",
    "capability_report",
    "capability_report_async",
    "classify_decoder_norms",
    "collect_activations",
    "crosscoder_config",
    "evaluate",
    "latent_classes",
    "latent_scaling",
    "load_artifact",
    "paired_residuals",
    "taxonomy",
    "top_activations",
    "train_crosscoder",
    "train_for_pair",
    "write_activation_shards",
]
