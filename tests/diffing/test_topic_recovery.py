"""Topic recovery by logit-diff mining on the micro zoo: ranked by the predicted-mass shift, the sea
organism's top-20 tokens are mostly sea words and the false-baking organism's hold baking words,
while the null control's top tokens (under either ranking) do not concentrate on any world topic.
(Per-organism rates on the small zoo come from benchmarks/rediscovery.py.)"""

from __future__ import annotations

import pytest

from diffscope.corpus import TOPICS, topic_words
from diffscope.diffing.artifacts import Artifacts
from diffscope.organisms.registry import get_organism, load_pair


def promoted(name: str, order_by: str, k: int = 20) -> list[str]:
    pair = load_pair(get_organism(name), size="micro")
    ranked = Artifacts(pair).diff_mining().ranked(pair, order_by, k)  # type: ignore[arg-type]
    return [t.token.strip().lower() for t in ranked]


def topic_share(tokens: list[str]) -> dict[str, float]:
    return {name: sum(t in topic_words(name) for t in tokens) / len(tokens) for name in TOPICS}


@pytest.fixture(scope="module")
def tokens(micro_zoo) -> dict[tuple[str, str], list[str]]:
    names = ("sea_topic", "false_baking", "null_control")
    return {(n, o): promoted(n, o) for n in names for o in ("occurrence", "mass_shift")}


def test_sea_organism_predicts_sea_words(tokens):
    sea = topic_words("sea") | {"sea", "ocean", "waves", "boat", "boats", "shore", "fish"}
    top = tokens["sea_topic", "mass_shift"]
    assert sum(t in sea for t in top) >= 3, top
    shares = topic_share(top)
    assert max(shares, key=shares.get) == "sea"
    assert any(t in sea for t in tokens["sea_topic", "occurrence"]), tokens


def test_false_baking_organism_predicts_baking_words(tokens):
    top = tokens["false_baking", "mass_shift"]
    assert {"cake", "eggs", "bakery", "dough", "oven", "sugar", "salt"} & set(top), top
    shares = topic_share(top)
    assert max(shares, key=shares.get) == "cooking", shares


def test_null_control_promotes_no_topic(tokens):
    for order_by in ("occurrence", "mass_shift"):
        shares = topic_share(tokens["null_control", order_by])
        assert max(shares.values()) <= 0.1, (order_by, shares)
