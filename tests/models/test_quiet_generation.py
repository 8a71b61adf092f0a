"""A user-facing generation prints no library deprecation notice (transformers' `past_key_values`
FutureWarning and its logged twin), while other warnings still show."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import warnings
from diffscope.workspace import PairSpec, open_workspace
ws = open_workspace(PairSpec(organism="sea_topic", size="micro"))
print(ws.pair.generate("finetuned", ["Once upon a time"], max_new_tokens=6))
warnings.warn("a warning that matters", UserWarning)
"""


def test_generation_prints_no_deprecation_noise(micro_zoo, diffscope_home) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "deprecated" not in proc.stderr
    assert "a warning that matters" in proc.stderr
