"""ModelPair: a base model and its fine-tune loaded side by side, with one tokenizer, batching with
left padding and matching position ids (`diffscope.models.batching`), generation, chat templates
and a weights fingerprint."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from diffscope.models.batching import (
    Batch,
    ChatText,
    added_bos,
    check_length,
    left_pad,
    positions_from_mask,
    tokenize,
    unpadded,
)
from diffscope.models.families import Family, blocks, family_for, n_neurons
from diffscope.models.placement import input_device, load_options, real_tensor
from diffscope.progress import checkpoint

log = logging.getLogger(__name__)

Which = Literal["base", "finetuned"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class PairLoadError(ValueError):
    """A base/fine-tune pair could not be loaded; the message says what to do."""


def weights_fingerprint(model: nn.Module) -> str:
    """A content hash of every parameter and buffer (names, shapes, dtypes, values).

    Tensors over 64 MiB are hashed on a strided sample of their bytes plus their sum, which keeps
    fingerprinting a multi-billion-parameter model to seconds while any realistic edit changes it.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, entry in sorted(model.state_dict().items()):
        tensor = real_tensor(model, name, entry)  # offloaded by a device map: the stored values
        flat = tensor.detach().contiguous().view(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        raw = flat.view(torch.uint8) if flat.dtype != torch.bool else flat.to(torch.uint8)
        if raw.numel() > 64 * 2**20:
            step = raw.numel() // (8 * 2**20)
            raw = raw[::step]
            digest.update(repr(float(flat.float().sum())).encode())
        digest.update(raw.cpu().numpy().tobytes())
    return digest.hexdigest()


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def _check_source(spec: str, what: str) -> None:
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists() and what != "adapter":
            raise PairLoadError(
                f"{what} folder {spec} has no config.json: give a folder saved with "
                "save_pretrained() or a hub id such as 'org/name'"
            )
        if what == "adapter" and not (path / "adapter_config.json").exists():
            raise PairLoadError(
                f"adapter folder {spec} has no adapter_config.json: give a folder saved by peft"
            )
        return
    if not _looks_like_hub_id(spec):
        raise PairLoadError(
            f"{what} model not found: {spec!r} is neither an existing folder nor a hub id "
            "('org/name'); check the path"
        )


def _resolve_gguf(spec: str, what: str) -> str:
    """A `.gguf` file as its converted HF folder (converted once, cached by the file's sha256);
    any other reference unchanged. A PairLoadError saying what is wrong with a bad GGUF file."""
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".gguf":
        return spec
    from diffscope.models.gguf import GGUFError, convert_gguf

    if not path.is_file():
        raise PairLoadError(f"{what} model not found: no GGUF file at {spec}; check the path")
    try:
        return str(convert_gguf(path))
    except GGUFError as exc:
        raise PairLoadError(f"{what} model {spec}: {exc}") from exc


def _load_model(
    spec: str,
    what: str,
    dtype: torch.dtype,
    device: str,
    trust: bool,
    device_map: str | None = None,
) -> nn.Module:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    _check_source(spec, what)
    placed = load_options(device_map, spec)  # `--device-map`: accelerate spreads the layers
    try:
        model: nn.Module = AutoModelForCausalLM.from_pretrained(
            str(Path(spec).expanduser()) if Path(spec).expanduser().exists() else spec,
            dtype=dtype,
            trust_remote_code=trust,
            **placed,
        )
    except OSError as exc:
        raise PairLoadError(
            f"could not load the {what} model {spec!r}: {exc}. For a hub id you need network "
            "access or a local copy in the Hugging Face cache"
        ) from exc
    model = model if placed else model.to(device)
    return model.eval().requires_grad_(False)


def _config(model: nn.Module) -> Any:
    """A transformers model's `config` (dynamic attributes; `nn.Module` types it as a module)."""
    return model.config


def _architecture(model: nn.Module) -> dict[str, object]:
    cfg = _config(model)
    keys = ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size")
    found = {k: getattr(cfg, k, None) for k in keys}
    if found["intermediate_size"] is None:
        found["intermediate_size"] = getattr(cfg, "n_inner", None) or 4 * cfg.hidden_size
    return found


def _compare_architectures(base: nn.Module, finetuned: nn.Module) -> None:
    a, b = _architecture(base), _architecture(finetuned)
    diffs = [f"{k}: base {a[k]} vs fine-tuned {b[k]}" for k in a if a[k] != b[k]]
    if diffs:
        raise PairLoadError(
            "base and fine-tuned models do not share an architecture (" + "; ".join(diffs) + "). "
            "Diffing needs two checkpoints of the same architecture"
        )


def _compare_tokenizers(base_tok, ft_tok) -> None:
    if ft_tok is None:
        return
    a, b = base_tok.get_vocab(), ft_tok.get_vocab()
    if a != b:
        only_a = sorted(set(a) - set(b))[:5]
        only_b = sorted(set(b) - set(a))[:5]
        moved = sorted(k for k in set(a) & set(b) if a[k] != b[k])[:5]
        raise PairLoadError(
            "base and fine-tuned tokenizers differ: "
            f"{len(set(a) - set(b))} tokens only in base (e.g. {only_a}), "
            f"{len(set(b) - set(a))} only in the fine-tune (e.g. {only_b}), "
            f"{len(moved)}+ with different ids (e.g. {moved}). Diffing needs one shared tokenizer"
        )


def _load_tokenizer(spec: str, trust: bool, required: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            str(Path(spec).expanduser()) if Path(spec).expanduser().exists() else spec,
            trust_remote_code=trust,
        )
    except (OSError, ValueError) as exc:
        if required:
            raise PairLoadError(f"could not load a tokenizer from {spec!r}: {exc}") from exc
        return None


@dataclass
class ModelPair:
    """A base model and its fine-tune sharing one tokenizer, both in eval mode on one device."""

    base: nn.Module
    finetuned: nn.Module
    tokenizer: object
    family: Family
    name: str = "pair"
    device: str = "cpu"
    chat: bool | None = None
    _fingerprint: str | None = field(default=None, repr=False)
    _base_fingerprint: str | None = field(default=None, repr=False)
    _special_ids: frozenset[int] | None = field(default=None, repr=False)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        base: str,
        finetuned: str | None = None,
        *,
        adapter: str | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        trust_remote_code: bool = False,
        name: str | None = None,
        device_map: str | None = None,
    ) -> ModelPair:
        """Load from local folders or hub ids; the fine-tune as full weights or a peft adapter.
        `device_map` (auto, balanced, sequential or a JSON map) replaces `device`: accelerate
        places each model's layers (`diffscope.models.placement`)."""
        if (finetuned is None) == (adapter is None):
            raise PairLoadError("give exactly one of a fine-tuned model or a peft adapter")
        if dtype not in DTYPES:
            raise PairLoadError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        torch_dtype = DTYPES[dtype]
        base = _resolve_gguf(base, "base")
        if finetuned is not None:
            finetuned = _resolve_gguf(finetuned, "fine-tuned")
        base_model = _load_model(base, "base", torch_dtype, device, trust_remote_code, device_map)
        tokenizer = _load_tokenizer(base, trust_remote_code, required=True)
        if adapter is not None:
            ft_model = _load_adapter(
                base, adapter, torch_dtype, device, trust_remote_code, device_map
            )
            ft_tok = _load_tokenizer(adapter, trust_remote_code, required=False)
        else:
            assert finetuned is not None  # exactly one of finetuned / adapter, checked above
            ft_model = _load_model(
                finetuned, "fine-tuned", torch_dtype, device, trust_remote_code, device_map
            )
            ft_tok = _load_tokenizer(finetuned, trust_remote_code, required=False)
        _compare_architectures(base_model, ft_model)
        _compare_tokenizers(tokenizer, ft_tok)
        try:
            family = family_for(base_model)
        except ValueError as exc:
            raise PairLoadError(str(exc)) from exc
        if device_map is not None:  # token ids go where the embedding computes
            device = str(input_device(base_model, family))
        return cls(
            base_model,
            ft_model,
            tokenizer,
            family,
            name=name or Path(finetuned or adapter or "pair").name,
            device=device,
        )

    @classmethod
    def from_models(cls, base: nn.Module, finetuned: nn.Module, tokenizer, name: str = "pair"):
        """Wrap two already-loaded models (tests, perturbations built in memory)."""
        _compare_architectures(base, finetuned)
        device = str(input_device(base, family_for(base)))
        return cls(
            base.eval(), finetuned.eval(), tokenizer, family_for(base), name=name, device=device
        )

    # -- facts -------------------------------------------------------------------------------
    def model(self, which: Which) -> nn.Module:
        if which not in ("base", "finetuned"):
            raise ValueError(f"model must be 'base' or 'finetuned', not {which!r}")
        return self.base if which == "base" else self.finetuned

    @property
    def n_layers(self) -> int:
        return len(blocks(self.base, self.family))

    @property
    def n_neurons(self) -> int:
        return n_neurons(self.base, self.family)

    @property
    def d_model(self) -> int:
        return int(_config(self.base).hidden_size)

    @property
    def vocab_size(self) -> int:
        """Width of the models' logits (the config's vocab_size, which may exceed the tokenizer's)."""
        return int(_config(self.finetuned).vocab_size)

    @property
    def context_length(self) -> int:
        cfg = _config(self.base)
        return int(getattr(cfg, "n_positions", None) or cfg.max_position_embeddings)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def is_chat(self) -> bool:
        """Whether prompts get the chat template by default (`chat`, else: a template exists)."""
        return self.has_chat_template if self.chat is None else self.chat

    def fingerprint(self) -> str:
        """Content hash of both models' weights: the key of every cached artifact."""
        if self._fingerprint is None:
            joined = self.base_fingerprint() + weights_fingerprint(self.finetuned)
            self._fingerprint = hashlib.blake2b(joined.encode(), digest_size=12).hexdigest()
        return self._fingerprint

    def base_fingerprint(self) -> str:
        """Content hash of the base model's weights alone (what the self-sampled corpus keys on)."""
        if self._base_fingerprint is None:
            self._base_fingerprint = weights_fingerprint(self.base)
        return self._base_fingerprint

    def check_layer(self, layer: int) -> int:
        """Return `layer` (negative counts from the end) or raise a ValueError saying the range."""
        n = self.n_layers
        if not -n <= layer < n:
            raise ValueError(f"layer {layer} is out of range: this pair has layers 0..{n - 1}")
        return layer % n

    # -- text --------------------------------------------------------------------------------
    def format_prompt(self, prompt: str, chat: bool | None = None) -> str:
        """Wrap a user prompt in the chat template when the pair is chat (or `chat=True`)."""
        use_chat = self.is_chat if chat is None else chat
        if not use_chat:
            return prompt
        if not self.has_chat_template:
            raise ValueError("this pair's tokenizer has no chat template")
        return ChatText(
            self.tokenizer.apply_chat_template(  # type: ignore[attr-defined]
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        )

    def encode(
        self, texts: Sequence[str], *, max_length: int | None = None, add_bos: bool = False
    ) -> Batch:
        """Tokenize with left padding. Raises ValueError when a text exceeds the context."""
        if not texts:
            raise ValueError("no texts given")
        rows = tokenize(self.tokenizer, texts, add_bos=add_bos)
        check_length(rows, max_length or self.context_length, "limit")
        return left_pad(rows, self.pad_id, self.device)

    def token_ids(self, text: str) -> list[int]:
        """One text's token ids as the model's tokenizer makes them (see `batching.tokenize`)."""
        return tokenize(self.tokenizer, [text])[0]

    @property
    def bos_id(self) -> int | None:
        """The BOS id the tokenizer puts before plain text by default (None: it adds none)."""
        return added_bos(self.tokenizer)

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids that are no text: the tokenizer's special and added control tokens (BOS, EOS, pad,
        unk, chat markers) and logit rows past the tokenizer's vocabulary. Rankings skip them."""
        if self._special_ids is not None:
            return self._special_ids
        tok = self.tokenizer
        ids = {int(i) for i in getattr(tok, "all_special_ids", []) or []}
        for token_id, added in (getattr(tok, "added_tokens_decoder", None) or {}).items():
            if getattr(added, "special", False):
                ids.add(int(token_id))
        size = len(tok)  # type: ignore[arg-type]
        ids.update(range(size, max(size, self.vocab_size)))
        self._special_ids = frozenset(ids)
        return self._special_ids

    def special_mask(self, width: int | None = None) -> torch.Tensor:
        """A bool [width] (default: the logits' width) that is True on `special_ids`."""
        width = self.vocab_size if width is None else width
        mask = torch.zeros(width, dtype=torch.bool)
        ids = [i for i in self.special_ids if i < width]
        if ids:
            mask[torch.tensor(ids)] = True
        return mask

    def batch_from_ids(self, input_ids: torch.Tensor) -> Batch:
        """Wrap unpadded, equal-length token windows as a Batch."""
        return unpadded(input_ids, self.device)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for attr in ("pad_token_id", "eos_token_id"):
            value = getattr(tok, attr, None)
            if value is not None:
                return int(value)
        return 0

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)  # type: ignore[attr-defined]

    def token_str(self, token_id: int) -> str:
        return self.tokenizer.decode([int(token_id)])  # type: ignore[attr-defined]

    # -- running -----------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, which: Which, batch: Batch) -> torch.Tensor:
        """Next-token logits [B, T, vocab] of one model."""
        return self.model(which)(**batch.model_inputs()).logits

    @torch.no_grad()
    def generate(
        self,
        which: Which,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 40,
        temperature: float = 0.0,
        seed: int = 0,
        chat: bool | None = None,
    ) -> list[str]:
        """Continuations of `prompts` (chat-templated when the pair is chat) from one model."""
        texts = [self.format_prompt(p, chat) for p in prompts]
        batch = self.encode(texts, max_length=max(1, self.context_length - max_new_tokens))
        model = self.model(which)
        gen = torch.Generator().manual_seed(seed)
        return self.sample(model, batch, max_new_tokens, temperature, gen)

    def sample(
        self,
        model: nn.Module,
        batch: Batch,
        max_new_tokens: int,
        temperature: float,
        gen: torch.Generator,
        logits_fn=None,
    ) -> list[str]:
        """Token-by-token sampling (greedy at temperature 0) with a KV cache.
        `logits_fn(ids, mask, positions) -> [B, T, vocab]` replaces the model's logits when given
        (logit amplification)."""
        ids, mask = batch.input_ids, batch.attention_mask
        eos = getattr(self.tokenizer, "eos_token_id", None)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        generated = ids[:, :0]
        past = None
        step_ids, step_pos = ids, positions_from_mask(mask)
        for _ in range(max_new_tokens):
            checkpoint()  # a cancelled request stops between tokens
            if logits_fn is None:
                res = model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_pos,
                    past_key_values=past,
                    use_cache=True,
                )
                past = res.past_key_values
                logits = res.logits[:, -1].float()
            else:
                full = torch.cat([ids, generated], dim=1)
                logits = logits_fn(full, mask, positions_from_mask(mask))[:, -1].float()
            nxt = _pick(logits, temperature, gen)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            generated = torch.cat([generated, nxt.view(-1, 1)], dim=1)
            if eos is not None:
                done |= nxt == eos
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_ids = nxt.view(-1, 1)
            step_pos = mask.sum(-1, keepdim=True) - 1
        texts = []
        for row in generated.tolist():
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            texts.append(self.decode(row))
        return texts


MIN_TEMPERATURE = 1e-4
"""Below this a temperature samples like greedy decoding (and dividing by it overflows), so it is."""


def _pick(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> torch.Tensor:
    """The next token of each row: greedy below MIN_TEMPERATURE, else sampled; never fails on
    non-finite numbers (NaN logits never win, a row without a usable distribution goes greedy)."""
    clean = torch.nan_to_num(
        logits.float(), nan=float("-inf"), posinf=torch.finfo(torch.float32).max
    )
    greedy = clean.argmax(-1)
    if not temperature >= MIN_TEMPERATURE:  # also catches a NaN temperature
        return greedy
    shifted = clean - clean.max(-1, keepdim=True).values  # <= 0: dividing cannot overflow
    probs = torch.softmax(shifted / temperature, dim=-1)
    usable = torch.isfinite(probs).all(-1) & (probs.sum(-1) > 0)
    if not bool(usable.all()):
        one_hot = torch.nn.functional.one_hot(greedy, probs.shape[-1]).to(probs.dtype)
        probs = torch.where(usable.unsqueeze(-1), probs, one_hot)
    return torch.multinomial(probs.cpu(), 1, generator=gen).view(-1).to(logits.device)


def _adapter_config(adapter: str) -> dict[str, Any]:
    import json

    path = Path(adapter).expanduser() / "adapter_config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_adapter_loaded(peft_model: nn.Module, adapter: str, declared: str) -> None:
    """Every tensor of the adapter file must have landed in the model (peft loads non-strictly,
    so an adapter made for another base can silently leave the fine-tune equal to the base)."""
    from peft.utils import get_peft_model_state_dict

    file = Path(adapter).expanduser() / "adapter_model.safetensors"
    if not file.is_file():
        return
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        stored = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    loaded = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(peft_model).items()}
    missing = sorted(k for k in stored if k not in loaded)
    wrong = sorted(k for k in stored if k in loaded and stored[k] != loaded[k])
    if missing or wrong:
        example = (missing or wrong)[0]
        raise PairLoadError(
            f"the peft adapter {adapter!r} does not fit this base model: {len(missing)} of its "
            f"{len(stored)} tensors name modules the base lacks and {len(wrong)} have other shapes "
            f"(e.g. {example}). It was made for {declared!r}; give that model as --base"
        )


def _load_adapter(
    base: str, adapter: str, dtype: torch.dtype, device: str, trust: bool, device_map=None
):
    from peft import PeftModel

    _check_source(adapter, "adapter") if Path(adapter).expanduser().exists() else None
    declared = str(_adapter_config(adapter).get("base_model_name_or_path") or "another model")
    fresh_base = _load_model(base, "base", dtype, device, trust, device_map)
    try:
        peft_model = PeftModel.from_pretrained(
            fresh_base,
            str(Path(adapter).expanduser()) if Path(adapter).expanduser().exists() else adapter,
        )
    except RuntimeError as exc:  # torch's load_state_dict: size mismatch
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        mismatch = [line for line in lines if "size mismatch" in line]
        detail = (mismatch or lines or [""])[0]
        raise PairLoadError(
            f"the peft adapter {adapter!r} does not fit this base model ({detail[:300]}). It was "
            f"made for {declared!r}; give that model as --base"
        ) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise PairLoadError(
            f"could not load the peft adapter {adapter!r} (made for {declared!r}) on this base: "
            f"{exc}"
        ) from exc
    _check_adapter_loaded(peft_model, adapter, declared)
    merged = peft_model.merge_and_unload()
    merged = merged if device_map is not None else merged.to(device)
    return merged.eval().requires_grad_(False)
