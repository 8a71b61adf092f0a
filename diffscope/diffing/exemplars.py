"""Exemplars, shared by every method that ranks corpus positions for one unit (an MLP neuron, a
crosscoder latent): the snippet around the peak token, marked [[like this]], and its score."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MARK_OPEN, MARK_CLOSE = "[[", "]]"


@dataclass
class Exemplar:
    """A corpus snippet where a unit peaked: the text with the peak token marked [[token]].

    `value` is what the exemplars were ranked by: |a_ft - a_base| for a neuron, the activation
    for a crosscoder latent. The other fields are filled where the method knows them.
    """

    text: str
    token: str
    value: float
    word: str = ""
    window: int | None = None
    position: int | None = None
    base_activation: float | None = None
    finetuned_activation: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The known fields as a JSON-friendly dict."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def mark(before: str, token: str, after: str) -> str:
    """`before[[token]]after`."""
    return f"{before}{MARK_OPEN}{token}{MARK_CLOSE}{after}"
