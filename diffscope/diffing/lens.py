"""Activation-difference lens: the mean of (h_ft - h_base) per early position at a layer over a
corpus, the logit lens of +/- a vector (final norm, then unembedding), and patchscope: scaled copies
of a vector patched into the last position of identity prompts, read off as next tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from pydantic import BaseModel, Field
from torch import nn

from diffscope import progress as pg
from diffscope.models.batching import Inputs, batches, token_rows
from diffscope.models.families import blocks, get_module
from diffscope.models.hooks import capture
from diffscope.models.pair import ModelPair, Which

IDENTITY_PROMPTS = (
    "man -> man\n1135 -> 1135\nhello -> hello\n?",
    "cat -> cat\n42 -> 42\nblue -> blue\n?",
    "house -> house\n7 -> 7\nriver -> river\n?",
)
PATCH_SCALES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0, 200.0)


@torch.no_grad()
def mean_diff(
    pair: ModelPair,
    windows: Inputs,
    layer: int,
    positions: int = 5,
    *,
    batch_size: int = 8,
    progress: pg.Show = None,
    backend: str = "hooks",
) -> torch.Tensor:
    """Mean of (h_ft - h_base) per position, [positions, d_model] (float32), where h is the
    residual stream after block `layer` and position p is the p-th token of a window or text.
    `backend` reads the residual through forward hooks or an nnsight trace.

    Only the first `positions` tokens are run (the models are causal, so this is exact). A
    position no sample reaches (texts shorter than `positions`) is NaN.
    """
    layer = pair.check_layer(layer)
    rows = token_rows(pair, windows, max_tokens=positions)
    total = torch.zeros(positions, pair.d_model, dtype=torch.float64)
    count = torch.zeros(positions, dtype=torch.float64)
    bar: pg.Progress[None] = pg.progress(len(rows), "mean difference", show=progress)
    for start, batch in batches(pair, rows, batch_size):
        hidden = {}
        for which in ("base", "finetuned"):
            model = pair.model(which)
            if backend == "nnsight":
                from diffscope.models.nnsight_backend import trace_activations

                got = trace_activations(model, pair.family, batch.model_inputs(), resid=[layer])
            else:
                with capture(model, pair.family, resid=[layer]) as got:
                    model(**batch.model_inputs())
            hidden[which] = got.resid[layer].double().cpu()
        delta = hidden["finetuned"] - hidden["base"]  # [B, T, d]
        mask = batch.attention_mask.bool().cpu()
        pos = batch.position_ids.cpu()
        total.index_add_(0, pos[mask], delta[mask])
        count.index_add_(0, pos[mask], torch.ones(int(mask.sum()), dtype=torch.float64))
        done = min(start + batch_size, len(rows))
        bar.advance(done - bar.done, message=f"mean difference over {done}/{len(rows)} windows")
    bar.close()
    return (total / count[:, None]).float()


class LensToken(BaseModel):
    """One token read off a vector."""

    token_id: int
    token: str
    logit: float
    prob: float


class LensResult(BaseModel):
    """Top tokens of +vector and -vector through the final norm and the unembedding."""

    norm: float = Field(description="L2 norm of the vector")
    positive: list[LensToken]
    negative: list[LensToken]


def _unembed(pair: ModelPair, which: Which, hidden: torch.Tensor) -> torch.Tensor:
    model = pair.model(which)
    norm = get_module(model, pair.family.final_norm)
    head = get_module(model, pair.family.unembed)
    param = next(head.parameters())
    return head(norm(hidden.to(param.device, param.dtype))).float()


def _lens_tokens(pair: ModelPair, logits: torch.Tensor, k: int) -> list[LensToken]:
    """The `k` highest-logit tokens that are text (special tokens skipped)."""
    probs = torch.softmax(logits, -1)
    text_logits = logits.masked_fill(pair.special_mask(logits.shape[-1]), float("-inf"))
    values, ids = torch.topk(text_logits, min(k, int(torch.isfinite(text_logits).sum())))
    return [
        LensToken(
            token_id=int(i), token=pair.token_str(int(i)), logit=float(v), prob=float(probs[i])
        )
        for v, i in zip(values.tolist(), ids.tolist(), strict=True)
    ]


def _check_vector(pair: ModelPair, vector: torch.Tensor) -> torch.Tensor:
    if vector.dim() != 1 or vector.shape[0] != pair.d_model:
        raise ValueError(
            f"the vector must have shape [{pair.d_model}] (d_model), got {tuple(vector.shape)}"
        )
    if not bool(torch.isfinite(vector).all()):
        raise ValueError("the vector holds NaN or infinite values")
    return vector.detach().float()


@torch.no_grad()
def logit_lens(
    pair: ModelPair, vector: torch.Tensor, k: int = 20, *, which: Which = "finetuned"
) -> LensResult:
    """The `k` top tokens of +vector and of -vector through `which` model's final norm and
    unembedding (the fine-tune's by default)."""
    vector = _check_vector(pair, vector)
    vocab = pair.vocab_size
    if not 1 <= k <= vocab:
        raise ValueError(f"k must be between 1 and the vocabulary size {vocab}, got {k}")
    logits = _unembed(pair, which, torch.stack([vector, -vector])).cpu()
    return LensResult(
        norm=float(vector.norm()),
        positive=_lens_tokens(pair, logits[0], k),
        negative=_lens_tokens(pair, logits[1], k),
    )


@contextmanager
def replace_last_position(model: nn.Module, pair: ModelPair, layer: int, value: torch.Tensor):
    """Overwrite the residual stream after block `layer` at the last position with `value`
    ([d_model] or [B, d_model]) on forwards inside the block."""

    def hook(_m, _i, out):
        hidden = out[0] if isinstance(out, tuple) else out
        hidden = hidden.clone()
        hidden[:, -1] = value.to(hidden.device, hidden.dtype)
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    handle = blocks(model, pair.family)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class PatchScale(BaseModel):
    """What the patched identity prompts predict next at one scale."""

    scale: float
    top: list[list[LensToken]] = Field(description="top next tokens, one list per prompt")
    common: list[str] = Field(description="tokens in every prompt's top k, by mean probability")
    consistency: float = Field(description="share of the top k common to all prompts")


class PatchscopeResult(BaseModel):
    """Patchscope readings of a vector over scales, and the scale whose tokens agree most."""

    layer: int
    which: str
    prompts: list[str]
    normalised: bool = Field(description="whether the vector was scaled to unit norm first")
    scales: list[PatchScale]
    best_scale: float
    best_tokens: list[str]


def _iter_scales(scales: Sequence[float]) -> Iterator[float]:
    if not scales:
        raise ValueError("give at least one scale")
    for scale in scales:
        if not scale > 0:
            raise ValueError(f"scales must be positive, got {scale}")
        yield float(scale)


@torch.no_grad()
def patchscope(
    pair: ModelPair,
    vector: torch.Tensor,
    layer: int,
    scales: Sequence[float] = PATCH_SCALES,
    k: int = 10,
    which: Which = "finetuned",
    *,
    prompts: Sequence[str] = IDENTITY_PROMPTS,
    normalise: bool = True,
) -> PatchscopeResult:
    """Replace the residual after block `layer` at the last position of each identity prompt by
    scale * vector (a unit vector when `normalise`) and read the `k` most likely next tokens.

    Per scale: each prompt's top tokens, the tokens common to all prompts' top k and the share of
    the top k they make up. `best_scale` has the most common tokens (ties: the higher mean
    probability of the common tokens, then the smaller scale). One batched forward per scale.
    """
    layer = pair.check_layer(layer)
    vector = _check_vector(pair, vector)
    if normalise:
        norm = vector.norm()
        if float(norm) == 0:
            raise ValueError("cannot normalise a zero vector")
        vector = vector / norm
    model = pair.model(which)
    vocab = pair.vocab_size
    if not 1 <= k <= vocab:
        raise ValueError(f"k must be between 1 and the vocabulary size {vocab}, got {k}")
    batch = pair.encode(list(prompts))
    results: list[PatchScale] = []
    best: tuple[int, float, float] | None = None
    best_scale, best_tokens = 0.0, []
    for scale in _iter_scales(scales):
        with replace_last_position(model, pair, layer, scale * vector):
            logits = model(**batch.model_inputs()).logits[:, -1].float().cpu()
        probs = torch.softmax(logits, -1)
        top = [_lens_tokens(pair, row, k) for row in logits]
        shared = set.intersection(*({t.token_id for t in row} for row in top))
        ranked = sorted(shared, key=lambda t: (-float(probs[:, t].mean()), t))
        common = [pair.token_str(t) for t in ranked]
        mean_p = float(probs[:, ranked].mean()) if ranked else 0.0
        results.append(PatchScale(scale=scale, top=top, common=common, consistency=len(common) / k))
        key = (len(common), mean_p, -scale)
        if best is None or key > best:
            best, best_scale, best_tokens = key, scale, common
    return PatchscopeResult(
        layer=layer,
        which=which,
        prompts=list(prompts),
        normalised=normalise,
        scales=results,
        best_scale=best_scale,
        best_tokens=best_tokens,
    )
