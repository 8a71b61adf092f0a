"""Tests of corpus loading (.txt, .jsonl, folders, specs) and token windows."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from diffscope.corpus import iter_batches, load_texts, resolve_corpus, token_windows, world_corpus

EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=[EOS, "[UNK]"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator(world_corpus(300, seed=0), trainer=trainer)
    return tok


def test_load_txt_splits_on_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("first doc\nstill first\n\n\nsecond doc\n  \nthird\n", encoding="utf-8")
    assert load_texts(path) == ["first doc\nstill first", "second doc", "third"]


def test_load_jsonl_text_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    rows = [
        {"text": "hello there"},
        {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yo."}]},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    assert load_texts(path) == ["hello there", "User: Hi?\nAssistant: Yo."]


def test_load_folder_reads_all_files_sorted(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("from b", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "from a"}), encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    assert load_texts(tmp_path) == ["from a", "from b"]


def test_missing_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found.*jsonl"):
        load_texts(tmp_path / "nope.txt")


def test_empty_corpus_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no documents"):
        load_texts(tmp_path / "empty.txt")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ValueError, match="no .txt or .jsonl"):
        load_texts(folder)


def test_bad_jsonl_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_texts(path)
    path.write_text('{"text": "ok"}\n\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 3.*'text'"):
        load_texts(path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported"):
        load_texts(path)


def test_resolve_corpus_specs(tmp_path: Path) -> None:
    assert resolve_corpus(None, n_docs=10, seed=1) == world_corpus(10, seed=1)
    assert resolve_corpus("world", n_docs=10, seed=1) == world_corpus(10, seed=1)
    assert resolve_corpus("world:sea", n_docs=5) == world_corpus(5, topics=["sea"])
    with pytest.raises(ValueError, match="unknown topic"):
        resolve_corpus("world:dragons")
    path = tmp_path / "c.txt"
    path.write_text("one\n\ntwo", encoding="utf-8")
    assert resolve_corpus(str(path)) == ["one", "two"]


def test_token_windows_shapes_and_determinism(tokenizer: Tokenizer) -> None:
    texts = world_corpus(100, seed=2)
    windows = token_windows(tokenizer, texts, 32)
    assert windows.dtype == torch.long and windows.ndim == 2 and windows.shape[1] == 32
    assert torch.equal(windows, token_windows(tokenizer, texts, 32))
    eos = tokenizer.token_to_id(EOS)
    assert (windows == eos).any()
    limited = token_windows(tokenizer, texts, 32, max_windows=5, bos_id=eos)
    assert limited.shape == (5, 32)
    assert (limited[:, 0] == eos).all()
    overlapping = token_windows(tokenizer, texts, 16, stride=8, max_windows=4)
    assert torch.equal(overlapping[0, 8:], overlapping[1, :8])


def test_token_windows_with_a_transformers_tokenizer(tokenizer: Tokenizer) -> None:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS)
    texts = world_corpus(40, seed=4)
    assert torch.equal(token_windows(hf, texts, 24), token_windows(tokenizer, texts, 24))


def test_token_windows_errors(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="empty"):
        token_windows(tokenizer, [], 16)
    with pytest.raises(ValueError, match="too short"):
        token_windows(tokenizer, ["a cat"], 64)


def test_iter_batches() -> None:
    windows = torch.arange(70).reshape(7, 10)
    batches = list(iter_batches(windows, 3))
    assert [batch.shape[0] for batch in batches] == [3, 3, 1]
    assert torch.equal(torch.cat(batches), windows)
    with pytest.raises(ValueError):
        list(iter_batches(windows, 0))
