"""The per-call compute limit: an estimate of how long a forward-pass or generation call will run,
and the ToolError that names a smaller call when it would run past the limit.

MCP clients cut a call at about 60 s, and every tool's call should finish in under 30 s on the
real zoo on 2 CPU cores (SmolLM2-135M: 30 layers, vocabulary 49152). The schema bounds each
argument on its own; what it cannot bound is their product (prompts x samples x tokens, and the
prompts' length). `estimate_s` prices a call in token positions run through one model:

- a batched forward costs `POSITION_S` per position (logits over the whole vocabulary included),
- a generation step with a KV cache costs `STEP_S` on top of its positions (the per-step
  overhead that dominates small batches),

both measured for a 135M-parameter model on 2 CPU cores and scaled by the pair's parameter count
(a GPU divides the estimate by `ACCELERATOR_SPEEDUP`, a conservative figure). `check_cost` raises
a ToolError when the estimate passes `CALL_LIMIT_S`, saying what the call would cost and which
smaller call fits (the caller computes that suggestion, since only it knows its arguments).
"""

from __future__ import annotations

from collections.abc import Callable

from diffscope.models.pair import ModelPair
from diffscope.tools.base import ToolError

CALL_LIMIT_S = 20.0
"""Estimated seconds a call may take: under the 30 s contract with room for a loaded machine."""
REFERENCE_PARAMS = 134_515_008  # SmolLM2-135M, what the figures below were measured on
POSITION_S = 1.0e-3
"""Seconds per token position of one batched forward of the reference model on 2 CPU cores."""
STEP_S = 0.08
"""Per-step overhead of KV-cached generation on the reference model on 2 CPU cores."""
ACCELERATOR_SPEEDUP = 10.0
_PARAMS_KEY = "_diffscope_param_count"


def param_count(pair: ModelPair) -> int:
    """The base model's parameter count (memoised on the pair)."""
    found = pair.__dict__.get(_PARAMS_KEY)
    if isinstance(found, int):
        return found
    count = sum(p.numel() for p in pair.base.parameters())
    pair.__dict__[_PARAMS_KEY] = count
    return count


def _scale(pair: ModelPair) -> float:
    scale = param_count(pair) / REFERENCE_PARAMS
    if str(pair.device).split(":", 1)[0] != "cpu":
        scale /= ACCELERATOR_SPEEDUP
    return scale


def forward_s(pair: ModelPair, positions: int, models: int = 2) -> float:
    """Estimated seconds of batched forwards over `positions` token positions of `models` models."""
    return positions * models * POSITION_S * _scale(pair)


def generate_s(
    pair: ModelPair, rows: int, prompt_tokens: int, new_tokens: int, models: int = 1
) -> float:
    """Estimated seconds of KV-cached generation: `rows` prompts padded to `prompt_tokens`, then
    `new_tokens` steps, on each of `models` models."""
    positions = rows * (prompt_tokens + new_tokens)
    return models * (positions * POSITION_S + new_tokens * STEP_S) * _scale(pair)


def uncached_generate_s(pair: ModelPair, rows: int, prompt_tokens: int, new_tokens: int) -> float:
    """Estimated seconds of generation that reruns both models on the whole sequence at every
    step (no KV cache: logit amplification)."""
    positions = rows * (new_tokens * prompt_tokens + new_tokens * (new_tokens - 1) // 2)
    return 2 * (positions * POSITION_S + new_tokens * STEP_S) * _scale(pair)


def largest_fitting(fits: Callable[[int], bool], high: int, low: int = 1) -> int | None:
    """The largest value in low..high for which `fits` holds (it must be monotone), else None."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def check_cost(tool: str, estimate: float, what: str, smaller: str) -> None:
    """A ToolError when `estimate` (seconds) passes the limit: what the call would do and
    `smaller`, the call to make instead."""
    if estimate <= CALL_LIMIT_S:
        return
    raise ToolError(
        f"{tool} would take about {estimate:.0f} s ({what}), past the {CALL_LIMIT_S:.0f} s a call "
        f"may take; {smaller}"
    )
