"""`top_promoted_tokens`: the tokens whose logits the fine-tune raised (and lowered) most over the
probe corpus, from the cached logit-diff mining, with its NMF topics."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from diffscope.diffing.mining import OrderBy, TokenStat, Topic
from diffscope.tools.base import ToolContext
from diffscope.tools.common import artifacts, engine_errors, model_pair
from diffscope.tools.registry import tool


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


@tool(tags=("diffmining",), title="Top promoted tokens")
def top_promoted_tokens(
    ctx: ToolContext,
    k: Annotated[int, Field(ge=1, le=50, description="tokens to return in each list")] = 20,
    order_by: Annotated[
        OrderBy,
        Field(
            description="occurrence: share of positions where the token is among the top-K logit "
            "increases; mass_shift: log ratio of how often each model predicts the token (its "
            "mean probability over the corpus), best for topics; frac_positive: share of "
            "positions where its logit rose; mean_diff: mean logit change"
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
    special = pair.special_ids  # also out of rankings cached before specials were filtered
    if order_by == "occurrence":
        up = [s for s in mining.promoted if s.token_id not in special][:k]
        down = [s for s in mining.demoted if s.token_id not in special][:k]
    else:
        up = mining.ranked(pair, order_by, k, promoted=True)
        down = mining.ranked(pair, order_by, k, promoted=False)
    return PromotedTokens(
        order_by=order_by,
        n_windows=mining.n_windows,
        n_positions=mining.n_positions,
        top_k=mining.top_k,
        promoted=up,
        demoted=down if demoted else [],
        topics=[
            t.model_copy(update={"tokens": [x for x in t.tokens if x.token_id not in special]})
            for t in mining.topics
        ]
        if topics
        else [],
    )
