"""Loading a base model and its fine-tune as one pair, and reaching their activations.

Two transformers deprecation notices that fire on every generation or save of the models this
package drives (the `past_key_values` argument transformers passes to itself, and
`is_gradient_checkpointing` read by its own save code), and its notice that a GPT-2 config names no
loss type (it then uses the causal-LM loss, the one the zoo trains with), are silenced here, by
exact message, so a user-facing run stays readable; every other warning still shows.
"""

import logging
import warnings

from diffscope.models.batching import Batch
from diffscope.models.families import FAMILIES, Family, family_for
from diffscope.models.hooks import Captured, add_to_residual, capture
from diffscope.models.pair import ModelPair, PairLoadError, weights_fingerprint

warnings.filterwarnings(
    "ignore", message=r"`past_key_values` is deprecated", category=FutureWarning
)
warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
)


def _not_cache_deprecation(record: logging.LogRecord) -> bool:
    return "`past_key_values`/`cache_params` are deprecated" not in record.getMessage()


# the same notice, also logged once per process by transformers' own generation code
logging.getLogger("transformers.utils.generic").addFilter(_not_cache_deprecation)


def _not_default_loss_notice(record: logging.LogRecord) -> bool:
    return (
        "`loss_type=None` was set in the config but it is unrecognized" not in record.getMessage()
    )


logging.getLogger("transformers.modeling_utils").addFilter(_not_default_loss_notice)

__all__ = [
    "FAMILIES",
    "Batch",
    "Captured",
    "Family",
    "ModelPair",
    "PairLoadError",
    "add_to_residual",
    "capture",
    "family_for",
    "weights_fingerprint",
]
