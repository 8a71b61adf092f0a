"""Device maps: every activation-reading primitive gives the single-device result when accelerate
spreads a model's layers over several places.

A CPU-only machine has one compute device, so the split here is accelerate's offload: with
`dispatch_model`, layers mapped to "disk" keep their weights on the meta device and in memory-mapped
files, and layers mapped to "cpu" stay resident; accelerate wraps every placed module's forward in
an `AlignDevicesHook` that loads its weights onto the execution device and moves its inputs there
before it runs, and puts the weights back after. That is the same hook machinery, on the same
modules, that places layers on several GPUs under `--device-map auto`: our capture hooks sit on
modules wrapped by accelerate's, the early-stopping forward raises from inside them, the intrinsic
mode calls one layer's norm and MLP directly (which must go through that layer's own placement),
and output weights and fingerprints are read from offloaded storage. The base and the fine-tune are
split differently, so no layer of one sits where the same layer of the other does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from diffscope.diffing.lens import mean_diff
from diffscope.diffing.neurons import ProfileConfig, profile_neurons
from diffscope.models import ModelPair
from diffscope.models.families import blocks, family_for, get_module
from diffscope.models.placement import (
    PlacementError,
    dispatch,
    layer_devices,
    module_device,
    parse_device_map,
)


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def perturbed(model: LlamaForCausalLM, seed: int = 1) -> LlamaForCausalLM:
    ft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return ft


def split_map(disk_layers: set[int]) -> dict[str, str]:
    out = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu"}
    out.update({f"model.layers.{i}": "disk" if i in disk_layers else "cpu" for i in range(4)})
    out.update({"model.norm": "cpu", "lm_head": "cpu"})
    return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    base, ft = tiny_llama(), None
    ft = perturbed(base)
    whole = ModelPair.from_models(base, ft, tokenizer=None, name="whole")
    off = Path(tmp_path_factory.mktemp("offload"))
    base_split = dispatch(copy.deepcopy(base), split_map({1, 3}), off / "base")
    ft_split = dispatch(copy.deepcopy(ft), split_map({0, 2}), off / "ft")
    return whole, ModelPair.from_models(base_split, ft_split, tokenizer=None, name="split")


def windows(n: int = 10, t: int = 12) -> torch.Tensor:
    return torch.randint(0, 97, (n, t), generator=torch.Generator().manual_seed(3))


def weight_device(model, layer: int, path: str) -> str:
    """The device type a block's sub-module weight is held on ("meta" when offloaded)."""
    family = family_for(model)
    module = get_module(blocks(model, family)[layer], path)
    return str(getattr(module, "weight").device.type)  # noqa: B009


def test_the_split_is_real(pairs) -> None:
    _, split = pairs
    assert weight_device(split.base, 1, "mlp.down_proj") == "meta"  # on disk
    assert weight_device(split.base, 0, "mlp.down_proj") == "cpu"  # resident
    assert weight_device(split.finetuned, 1, "mlp.down_proj") == "cpu"
    mlp = get_module(blocks(split.base, split.family)[1], "mlp")
    assert module_device(mlp) == torch.device("cpu")  # where it computes
    assert layer_devices(split.base, split.family) == ["cpu"] * 4


def test_fingerprint_reads_offloaded_weights(pairs) -> None:
    whole, split = pairs
    assert split.fingerprint() == whole.fingerprint()


def test_logits_match(pairs) -> None:
    whole, split = pairs
    batch = whole.batch_from_ids(windows(3))
    for which in ("base", "finetuned"):
        a, b = whole.logits(which, batch), split.logits(which, batch)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_neuron_profile_matches_with_intrinsic_mode(pairs) -> None:
    whole, split = pairs
    cfg = ProfileConfig(intrinsic=True, batch_size=4, exemplars=4)
    a = profile_neurons(whole, windows(), cfg)
    b = profile_neurons(split, windows(), cfg)
    assert a.n_tokens == b.n_tokens
    for mode in ("total", "intrinsic"):
        for name, value in a.metrics[mode].items():
            torch.testing.assert_close(value, b.metrics[mode][name], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.ex_gap, b.ex_gap, rtol=1e-4, atol=1e-5)
    assert torch.equal(a.ex_tokens, b.ex_tokens)
    assert a.metrics["intrinsic"]["rms"].abs().sum() > 0  # the fine-tune's MLPs really differ


def test_mean_diff_matches(pairs) -> None:
    whole, split = pairs
    for layer in (0, 3):
        a = mean_diff(whole, windows(6), layer, positions=5)
        b = mean_diff(split, windows(6), layer, positions=5)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_parse_device_map(tmp_path: Path) -> None:
    assert parse_device_map(None) is None
    assert parse_device_map("auto") == "auto"
    assert parse_device_map('{"model.layers.0": 0, "lm_head": "cpu"}') == {
        "model.layers.0": 0,
        "lm_head": "cpu",
    }
    f = tmp_path / "map.json"
    f.write_text('{"model": "cpu"}')
    assert parse_device_map(str(f)) == {"model": "cpu"}
    with pytest.raises(PlacementError, match="one of auto"):
        parse_device_map("everywhere")
    with pytest.raises(PlacementError, match="does not exist"):
        parse_device_map(str(tmp_path / "missing.json"))
    with pytest.raises(PlacementError, match="GPU index"):
        parse_device_map('{"model": [1]}')


def test_loading_a_zoo_pair_with_a_device_map_matches(
    micro_zoo, tmp_path: Path, monkeypatch
) -> None:
    """`ModelPair.load(..., device_map=...)` (what `--device-map` passes) through transformers'
    own dispatch: the second block and the final norm go to disk, the rest stays resident."""
    import json

    monkeypatch.setenv("DIFFSCOPE_OFFLOAD", str(tmp_path / "offload"))
    from diffscope.organisms.registry import get_organism, load_pair

    org = get_organism("cowboy_persona")
    plain = load_pair(org, size="micro")
    split_map = {
        "transformer.wte": "cpu",
        "transformer.wpe": "cpu",
        "transformer.h.0": "cpu",
        "transformer.h.1": "disk",
        "transformer.ln_f": "disk",
        "lm_head": "cpu",
    }
    split = load_pair(org, size="micro", device_map=json.dumps(split_map))
    assert weight_device(split.finetuned, 1, "mlp.c_fc") == "meta"
    assert split.device == "cpu"
    assert list((tmp_path / "offload").rglob("*"))  # the disk layers were written there
    assert split.fingerprint() == plain.fingerprint()
    data = windows(6, 12)
    cfg = ProfileConfig(intrinsic=True, batch_size=3)
    a, b = profile_neurons(plain, data, cfg), profile_neurons(split, data, cfg)
    for mode in ("total", "intrinsic"):
        for name, value in a.metrics[mode].items():
            torch.testing.assert_close(value, b.metrics[mode][name], rtol=1e-4, atol=1e-5)
    batch = plain.batch_from_ids(data[:2])
    torch.testing.assert_close(plain.logits("finetuned", batch), split.logits("finetuned", batch))
