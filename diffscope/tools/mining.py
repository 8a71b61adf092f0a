"""`top_promoted_tokens`: the tokens whose logits the fine-tune raised (and lowered) most over the
probe corpus, from the cached logit-diff mining, with its NMF topics."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, Field

from diffscope.diffing.mining import DiffMining, TokenStat, Topic
from diffscope.models.pair import ModelPair
from diffscope.tools.base import ToolContext, ToolError
from diffscope.tools.common import artifacts, engine_errors, model_pair
from diffscope.tools.registry import tool

OrderBy = Literal["occurrence", "frac_positive", "mean_diff"]


class PromotedTokens(BaseModel):
    """Tokens the fine-tune promotes and demotes over the probe corpus, and the topics they form."""

    order_by: OrderBy
    n_windows: int = Field(description="corpus windows mined")
    n_positions: int = Field(description="token positions mined")
    top_k: int = Field(description="K of the per-position top-K counted by `occurrence`")
    promoted: list[TokenStat] = Field(
        description="tokens the fine-tune made more likely, best first"
    )
    demoted: list[TokenStat] = Field(
        description="tokens the fine-tune made less likely, best first"
    )
    topics: list[Topic] = Field(description="NMF topics over positions x promoted tokens")


def _by_tensor(
    pair: ModelPair, mining: DiffMining, order_by: OrderBy, k: int, promoted: bool
) -> list[TokenStat]:
    """Rank every token of the vocabulary by `order_by` (descending when promoted)."""
    n = min(int(mining.mean_diff.shape[0]), len(pair.tokenizer))  # type: ignore[arg-type]
    key = getattr(mining, order_by)[:n].double()
    tie = mining.mean_diff[:n].double()
    if not promoted:
        key, tie = -key, -tie
    # sort by the key, breaking ties by mean difference
    order = torch.argsort(tie, descending=True, stable=True)
    order = order[torch.argsort(key[order], descending=True, stable=True)][:k]
    rates = mining.occurrence if promoted else mining.neg_occurrence
    return [
        TokenStat(
            token_id=int(t),
            token=pair.token_str(int(t)),
            occurrence=float(rates[t]),
            frac_positive=float(mining.frac_positive[t]),
            mean_diff=float(mining.mean_diff[t]),
        )
        for t in order.tolist()
    ]


@tool(tags=("diffmining",), title="Top promoted tokens")
def top_promoted_tokens(
    ctx: ToolContext,
    k: Annotated[int, Field(ge=1, le=50, description="tokens to return in each list")] = 20,
    order_by: Annotated[
        OrderBy,
        Field(
            description="occurrence: share of positions where the token is among the top-K logit "
            "increases; frac_positive: share of positions where its logit rose; mean_diff: mean "
            "logit change"
        ),
    ] = "occurrence",
    demoted: Annotated[bool, Field(description="also list the tokens pushed down")] = True,
    topics: Annotated[bool, Field(description="include the NMF topics")] = True,
) -> PromotedTokens:
    """Tokens whose logits the fine-tune raised and lowered most over the probe corpus, and topics.

    Computed once per pair by logit-diff mining (ft_logits - base_logits at every corpus position)
    and then served from the cache.
    """
    pair = model_pair(ctx)
    with engine_errors():
        mining = artifacts(ctx).diff_mining()
    if order_by == "occurrence":
        up, down = mining.promoted[:k], mining.demoted[:k]
    else:
        if getattr(mining, order_by, None) is None:
            raise ToolError(
                f"the cached diff mining has no per-token {order_by}; use order_by='occurrence'"
            )
        up = _by_tensor(pair, mining, order_by, k, promoted=True)
        down = _by_tensor(pair, mining, order_by, k, promoted=False)
    return PromotedTokens(
        order_by=order_by,
        n_windows=mining.n_windows,
        n_positions=mining.n_positions,
        top_k=mining.top_k,
        promoted=up,
        demoted=down if demoted else [],
        topics=mining.topics if topics else [],
    )
