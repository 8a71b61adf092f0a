"""Training a crosscoder on paired activations, deterministic and resumable.

`train_crosscoder` normalises each model's activations to mean norm sqrt(d) (scales stored in the
model), then runs Adam with gradient clipping and a linear learning-rate decay to zero over the
last `decay_frac` of steps. Losses (per token, averaged over the batch):

- l1: sum over models of ||x_m - xhat_m||^2 + lambda * sum_j f_j (||d_j^base|| + ||d_j^ft||), with
  lambda warming up linearly over the first `warmup_frac` of steps;
- batchtopk: sum over models of ||x_m - xhat_m||^2 + aux_coeff * aux, where aux is the squared
  error of reconstructing the (detached) residual from the top `aux_k` dead latents (not fired in
  `dead_after_tokens` tokens), in the same units as the main term (Gao et al. 2024: L + alpha *
  ||e - e_hat||^2). After the warm-up the inference threshold tracks the EMA of the smallest kept
  score.

The auxiliary term is deliberately not divided by the residual's variance (the BatchTopK trainer
of the `dictionary-learning` package does divide it): that makes it O(1) while the main term is a
sum of squares over 2 * d_model dimensions, which divides alpha by the residual's total variance
(~30 in the sqrt(d)-scaled space at d_model 128), and dead latents then barely move. On the small zoo's
backdoor organism (2000 steps, dictionary 2048, k 16) the dead fraction was 0.69 with the
normalised term and 0.01 without it, and FVE rose from 0.90/0.83 to 0.92/0.86.

Data order comes from a seeded generator. A checkpoint (one safetensors file whose metadata holds
the config as JSON) carries the model, Adam state, step, RNG states, dead-latent counters and the
threshold; resuming from it reproduces an uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from diffscope import progress as pg
from diffscope.diffing.crosscoder.activations import ActivationSource, sample_stats
from diffscope.diffing.crosscoder.model import Crosscoder, CrosscoderConfig, sqrt_d_scales
from diffscope.paths import save_tensors

CHECKPOINT_FILE = "checkpoint.safetensors"
TRAINER_VERSION = 2
"""Bumped when training gives different weights for the same config (it keys cached artifacts).
2: the BatchTopK auxiliary loss is no longer divided by the residual's variance."""
_ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")


def lr_factor(step: int, cfg: CrosscoderConfig) -> float:
    """Learning-rate multiplier at `step`: 1, then linear to 0 over the last `decay_frac`."""
    decay_start = cfg.steps * (1 - cfg.decay_frac)
    if cfg.decay_frac <= 0 or step < decay_start:
        return 1.0
    return max(0.0, (cfg.steps - step) / (cfg.steps - decay_start))


def warmup_steps(cfg: CrosscoderConfig) -> int:
    """Steps of L1-coefficient warm-up (and of BatchTopK threshold burn-in)."""
    return int(cfg.warmup_frac * cfg.steps)


def l1_factor(step: int, cfg: CrosscoderConfig) -> float:
    """L1 coefficient multiplier at `step`: linear from 0 to 1 over the warm-up."""
    warm = warmup_steps(cfg)
    return 1.0 if warm == 0 else min(1.0, step / warm)


class IndexStream:
    """Endless stream of row indices: a fresh seeded permutation of 0..N-1 per epoch."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch_state = self.gen.get_state()
        self.perm = torch.randperm(self.n, generator=self.gen)
        self.pos = 0

    def next(self, size: int) -> torch.Tensor:
        """The next `size` indices, crossing into a new epoch when this one runs out."""
        parts = []
        while size:
            if self.pos == self.n:
                self.epoch += 1
                self._start_epoch()
            take = min(size, self.n - self.pos)
            parts.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            size -= take
        return torch.cat(parts)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "data.epoch_gen_state": self.epoch_state.clone(),
            "data.pos": torch.tensor(self.pos),
            "data.epoch": torch.tensor(self.epoch),
        }

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        self.gen.set_state(state["data.epoch_gen_state"])
        self._start_epoch()
        self.pos = int(state["data.pos"])
        self.epoch = int(state["data.epoch"])


def aux_loss(
    model: Crosscoder,
    residual: torch.Tensor,
    relu: torch.Tensor,
    dead: torch.Tensor,
    aux_k: int,
) -> torch.Tensor:
    """Squared error of reconstructing `residual` [B, 2, d] from the top dead latents.

    Per row, the `aux_k` dead latents with the largest scores reconstruct the residual (no
    decoder bias); the error is summed over both models and dimensions and averaged over rows,
    the same units as the main reconstruction term (see the module docstring). Work is done on
    the dead columns only, so the cost scales with the number of dead latents.
    """
    dead_idx = dead.nonzero().squeeze(1)
    if dead_idx.numel() == 0:
        return residual.new_zeros(())
    sub = relu[:, dead_idx]
    with torch.no_grad():
        norms = model.decoder_norms()[:, dead_idx].sum(0)
        idx = (sub.detach() * norms).topk(min(aux_k, dead_idx.numel()), dim=1).indices
    f_aux = torch.zeros_like(sub).scatter(1, idx, sub.gather(1, idx))
    recon = (f_aux @ model.W_dec.view(model.dict_size, -1)[dead_idx]).view_as(residual)
    return (residual - recon).pow(2).sum((1, 2)).mean()


def _config_json(cfg: CrosscoderConfig) -> str:
    return json.dumps(cfg.model_dump(), sort_keys=True)


def _save_checkpoint(
    path: Path,
    cfg: CrosscoderConfig,
    model: Crosscoder,
    opt: torch.optim.Adam,
    step: int,
    since_fired: torch.Tensor,
    stream: IndexStream,
) -> None:
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()
    }
    for name, p in model.named_parameters():
        for key, value in opt.state.get(p, {}).items():
            tensors[f"optim.{name}.{key}"] = value.detach().cpu()
    tensors["step"] = torch.tensor(step)
    tensors["dead.since_fired"] = since_fired.cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors.update(stream.state())
    save_tensors(path, tensors, metadata={"config": _config_json(cfg), "step": str(step)})


def _load_checkpoint(
    path: Path,
    cfg: CrosscoderConfig,
    model: Crosscoder,
    opt: torch.optim.Adam,
    stream: IndexStream,
) -> tuple[int, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        saved = (f.metadata() or {}).get("config")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    if saved is None or json.loads(saved) != json.loads(_config_json(cfg)):
        raise ValueError(f"checkpoint {path} was written for a different crosscoder config")
    device = model.W_enc.device
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    )
    for name, p in model.named_parameters():
        keys = [f"optim.{name}.{key}" for key in _ADAM_KEYS]
        if all(k in tensors for k in keys):
            opt.state[p] = {
                key: tensors[k] if key == "step" else tensors[k].to(device)
                for key, k in zip(_ADAM_KEYS, keys, strict=True)
            }
    torch.set_rng_state(tensors["rng.torch"])
    stream.restore(tensors)
    return int(tensors["step"]), tensors["dead.since_fired"].to(device)


def train_crosscoder(
    acts: ActivationSource,
    cfg: CrosscoderConfig,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1000,
    progress: pg.Show = True,
    stop_after_steps: int | None = None,
    device: str | torch.device = "cpu",
) -> Crosscoder:
    """Train (or resume training) a crosscoder on `acts` and return it in eval mode.

    With `checkpoint_dir`, a checkpoint is written every `checkpoint_every` steps, when stopping
    and at the end (plus the final model via `Crosscoder.save`); an existing checkpoint there is
    resumed. `stop_after_steps` ends this call after that many steps (an interruption to resume).
    """
    n = len(acts)
    if n == 0:
        raise ValueError("no activations to train on")
    torch.manual_seed(cfg.seed)
    model = Crosscoder.from_config(cfg, torch.Generator().manual_seed(cfg.seed)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    stream = IndexStream(n, cfg.seed + 1)
    since_fired = torch.zeros(cfg.dict_size, dtype=torch.long, device=device)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    start = 0
    if ckpt is not None and ckpt.exists():
        start, since_fired = _load_checkpoint(ckpt, cfg, model, opt, stream)
    else:
        mean_norms, mean = sample_stats(
            acts, cfg.norm_sample, torch.Generator().manual_seed(cfg.seed + 2)
        )
        if callable(getattr(acts, "mean_norms", None)):
            mean_norms = acts.mean_norms()  # type: ignore[attr-defined]
        scale = sqrt_d_scales(mean_norms, cfg.d_model)
        with torch.no_grad():
            model.scale.copy_(scale)
            model.b_dec.copy_((mean * scale.double()[:, None]).float())
            # centre the encoder at init: pre-activations of the mean activation are zero
            model.b_enc.copy_(-(model.b_dec.view(1, -1) @ model.W_enc.view(-1, cfg.dict_size))[0])
    end = cfg.steps if stop_after_steps is None else min(cfg.steps, start + stop_after_steps)
    aux_k = cfg.aux_k or cfg.d_model
    warm = warmup_steps(cfg)
    model.train()
    bar: pg.Progress[None] = pg.progress(cfg.steps, "crosscoder", show=progress, initial=start)
    post_every = max(1, cfg.steps // 200)
    for step in range(start, end):
        x = model.normalize(acts.batch(stream.next(cfg.batch_size)).to(device))
        code = model.batch_code(x)
        f = code.f
        err = x - model.decode(f)
        recon = err.pow(2).sum((1, 2)).mean()
        since_fired = torch.where(code.fired, 0, since_fired + x.shape[0])
        if cfg.loss == "l1":
            sparsity = (f * model.decoder_norms().sum(0)).sum(1).mean()
            extra = cfg.l1_coeff * l1_factor(step, cfg) * sparsity
        else:
            dead = since_fired >= cfg.dead_after_tokens
            extra = cfg.aux_coeff * aux_loss(model, err.detach(), code.relu, dead, aux_k)
            if step >= warm:
                model.update_threshold(code.min_score, cfg.threshold_beta)
        loss = recon + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        opt.step()
        done = step + 1
        info = None
        if progress and (done % post_every == 0 or done == end):
            l0 = (f > 0).sum(1).float().mean().item()
            dead_frac = (since_fired >= cfg.dead_after_tokens).float().mean().item()
            info = f"loss={loss.item():.4g} l0={l0:.1f} dead={dead_frac:.2f}"
        bar.advance(info=info)
        if ckpt is not None and done % checkpoint_every == 0 and done != end:
            _save_checkpoint(ckpt, cfg, model, opt, done, since_fired, stream)
    bar.close()
    if ckpt is not None:
        _save_checkpoint(ckpt, cfg, model, opt, max(end, start), since_fired, stream)
        if end >= cfg.steps:
            model.save(ckpt.parent, cfg)
    return model.eval()
