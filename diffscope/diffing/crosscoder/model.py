"""The crosscoder: one shared sparse code over paired (base, fine-tuned) activations.

Input activations have shape [B, 2, d]: index 0 is the base model, index 1 the fine-tune, at the
same layer and token. The encoder is shared, f = ReLU(sum_m x_m W_enc[m] + b_enc), and each model
has its own decoder, xhat_m = f W_dec[m] + b_dec[m], so latent j owns one decoder vector per model.

Two sparsity regimes: "l1" (plain ReLU code, the trainer adds a decoder-norm weighted L1 penalty)
and "batchtopk" (keep the k*B largest scores ReLU(pre)_j * (||d_j^base|| + ||d_j^ft||) over the
whole batch in training; at inference a threshold, the EMA of the smallest kept score, replaces the
batch top-k so a row's code does not depend on its batch-mates).

Layouts: `W_enc` is [2, d, F] and `W_dec` is [F, 2, d] (so `W_dec[:, m]` is model m's decoder and
the decode is one [B, F] x [F, 2d] matmul). The buffer `scale` [2] holds the per-model factors that
bring raw activations to mean norm sqrt(d); `normalize` applies them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from diffscope.paths import save_tensors, write_json

LossKind = Literal["batchtopk", "l1"]

WEIGHTS_FILE = "crosscoder.safetensors"
CONFIG_FILE = "config.json"


class CrosscoderConfig(BaseModel):
    """Everything that defines a crosscoder and how it is trained."""

    model_config = ConfigDict(extra="forbid")

    d_model: int = Field(gt=0)
    dict_size: int = Field(gt=0)
    loss: LossKind = "batchtopk"
    k: int = Field(default=100, gt=0, description="BatchTopK: mean active latents per token")
    l1_coeff: float = Field(default=0.04, ge=0, description="L1: final sparsity coefficient")
    lr: float = Field(default=1e-4, gt=0)
    batch_size: int = Field(default=2048, gt=0)
    steps: int = Field(default=10_000, gt=0)
    warmup_frac: float = Field(default=0.05, ge=0, le=1, description="L1 coefficient warm-up")
    decay_frac: float = Field(default=0.2, ge=0, le=1, description="final linear lr decay to 0")
    grad_clip: float = Field(default=1.0, gt=0)
    aux_coeff: float = Field(default=1 / 32, ge=0)
    aux_k: int | None = Field(default=None, description="dead latents used by the aux loss; d")
    dead_after_tokens: int = Field(default=10_000_000, gt=0)
    threshold_beta: float = Field(default=0.999, ge=0, lt=1)
    dec_init_norm: float = Field(default=0.1, gt=0)
    norm_sample: int = Field(default=8192, gt=0, description="rows used to estimate the scales")
    seed: int = 0


class BatchCode(NamedTuple):
    """A training-mode code: `f` [B, F], `relu` = ReLU(pre) [B, F], `fired` [F] (latents active
    in this batch) and `min_score` (smallest kept BatchTopK score; 0 for L1)."""

    f: torch.Tensor
    relu: torch.Tensor
    fired: torch.Tensor
    min_score: torch.Tensor


class Crosscoder(nn.Module):
    """A two-model crosscoder with a shared encoder and one decoder per model."""

    threshold: torch.Tensor  # buffer, registered in __init__
    scale: torch.Tensor  # buffer, registered in __init__

    def __init__(
        self,
        d_model: int,
        dict_size: int,
        loss: LossKind = "batchtopk",
        k: int = 100,
        *,
        dec_init_norm: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if loss not in ("batchtopk", "l1"):
            raise ValueError(f"unknown crosscoder loss {loss!r}; use 'batchtopk' or 'l1'")
        self.d_model = d_model
        self.dict_size = dict_size
        self.loss = loss
        self.k = k
        dec = torch.randn(dict_size, 2, d_model, generator=generator)
        dec = dec / dec.norm(dim=-1, keepdim=True) * dec_init_norm
        self.W_dec = nn.Parameter(dec)
        self.W_enc = nn.Parameter(dec.permute(1, 2, 0).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(dict_size))
        self.b_dec = nn.Parameter(torch.zeros(2, d_model))
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.register_buffer("scale", torch.ones(2))

    @classmethod
    def from_config(
        cls, cfg: CrosscoderConfig, generator: torch.Generator | None = None
    ) -> Crosscoder:
        """Build an untrained crosscoder for `cfg`."""
        return cls(
            cfg.d_model,
            cfg.dict_size,
            cfg.loss,
            cfg.k,
            dec_init_norm=cfg.dec_init_norm,
            generator=generator,
        )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [B, 2, d] activations to the scaled float32 space the crosscoder works in."""
        return x.to(self.W_enc.dtype) * self.scale[None, :, None]

    def decoder_norms(self) -> torch.Tensor:
        """||d_j^m|| as a [2, F] tensor (row 0 base, row 1 fine-tune)."""
        return self.W_dec.norm(dim=-1).T

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations sum_m x_m W_enc[m] + b_enc, shape [B, F]."""
        return torch.addmm(
            self.b_enc, x.reshape(x.shape[0], -1), self.W_enc.view(-1, self.dict_size)
        )

    def batch_code(self, x: torch.Tensor) -> BatchCode:
        """Training-mode code of normalised x [B, 2, d], with what the trainer needs besides.

        BatchTopK keeps the k*B largest scores ReLU(pre)_j * (||d_j^base|| + ||d_j^ft||) over the
        whole batch (gradients flow through the kept ReLU values); L1 keeps every ReLU value.
        """
        relu = torch.relu(self.pre_acts(x))
        if self.loss == "l1":
            fired = (relu > 0).any(0)
            return BatchCode(relu, relu, fired, relu.new_zeros(()))
        with torch.no_grad():
            scores = relu.detach() * self.decoder_norms().sum(0)
            keep = min(self.k * x.shape[0], scores.numel())
            vals, idx = scores.flatten().topk(keep, sorted=False)
            positive = vals > 0
            fired = torch.zeros(self.dict_size, dtype=torch.bool, device=x.device)
            fired[idx[positive] % self.dict_size] = True
            low = vals.masked_fill(~positive, torch.inf).min()
            low = torch.where(torch.isinf(low), torch.zeros_like(low), low)
        flat = relu.flatten()
        f = torch.zeros_like(flat).scatter(0, idx, flat.gather(0, idx)).view_as(relu)
        return BatchCode(f, relu, fired, low)

    def encode(self, x: torch.Tensor, use_threshold: bool | None = None) -> torch.Tensor:
        """Latent code f [B, F] of normalised activations x [B, 2, d].

        BatchTopK: `use_threshold=None` means the threshold in eval mode (when one was learned)
        and the batch top-k in training mode; with the threshold, a row's code does not depend on
        the other rows. L1: the plain ReLU code, `use_threshold` ignored.
        """
        if self.loss == "l1":
            return torch.relu(self.pre_acts(x))
        if use_threshold is None:
            use_threshold = not self.training and bool(self.threshold >= 0)
        if not use_threshold:
            return self.batch_code(x).f
        relu = torch.relu(self.pre_acts(x))
        scores = relu * self.decoder_norms().sum(0)
        return torch.where(scores > self.threshold, relu, torch.zeros_like(relu))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction [B, 2, d] of a code f [B, F]."""
        out = f @ self.W_dec.view(self.dict_size, -1)
        return out.view(f.shape[0], 2, self.d_model) + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction [B, 2, d], code [B, F]) of normalised activations x."""
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def update_threshold(self, min_kept_score: torch.Tensor, beta: float) -> None:
        """EMA a batch's smallest kept BatchTopK score into `threshold` (set it the first time)."""
        low = min_kept_score.to(self.threshold)
        ema = beta * self.threshold + (1 - beta) * low
        self.threshold.copy_(torch.where(self.threshold < 0, low, ema))

    def arch(self) -> dict[str, object]:
        """The constructor arguments, as saved beside the weights."""
        return {
            "d_model": self.d_model,
            "dict_size": self.dict_size,
            "loss": self.loss,
            "k": self.k,
        }

    def save(self, directory: str | os.PathLike[str], cfg: CrosscoderConfig | None = None) -> Path:
        """Write weights (safetensors) and config (JSON) into `directory`, each atomically."""
        directory = Path(directory)
        info = {"arch": self.arch(), "config": cfg.model_dump() if cfg else None}
        tensors = {name: t.detach().cpu() for name, t in self.state_dict().items()}
        save_tensors(directory / WEIGHTS_FILE, tensors, metadata={"diffscope": json.dumps(info)})
        write_json(directory / CONFIG_FILE, info)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str = "cpu") -> Crosscoder:
        """Load a crosscoder written by `save`."""
        from safetensors.torch import load_file

        directory = Path(directory)
        info = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        model = cls(**info["arch"])
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=device))
        return model.to(device).eval()

    @staticmethod
    def load_config(directory: str | os.PathLike[str]) -> CrosscoderConfig | None:
        """The training config saved beside a crosscoder, if any."""
        info = json.loads((Path(directory) / CONFIG_FILE).read_text(encoding="utf-8"))
        return CrosscoderConfig(**info["config"]) if info.get("config") else None


def sqrt_d_scales(mean_norms: torch.Tensor, d_model: int) -> torch.Tensor:
    """Per-model factors mapping activations of the given mean norms [2] to mean norm sqrt(d)."""
    norms = mean_norms.double().clamp_min(1e-12)
    return (math.sqrt(d_model) / norms).float()
