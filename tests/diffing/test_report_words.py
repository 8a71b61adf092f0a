"""Readable words for the report summary: special tokens, broken bytes, punctuation and function
words are dropped, and word pieces stand for the whole words they are part of in the evidence,
each scored by its weakest piece; on a hand-made vocabulary and on a trained BPE tokenizer."""

from __future__ import annotations

from diffscope.diffing.report_words import (
    junk_reason,
    piece_text,
    readable_labels,
    readable_words,
    special_ids,
    word_index,
)

VOCAB = {
    0: "<eos>",
    1: " sea",
    2: " harb",
    3: "or",
    4: " the",
    5: "\ufffd",
    6: " .",
    7: "st",
    8: " fir",
    9: " sto",
    10: "ry",
    11: " u",
    12: " boat",
    13: " shore",
    14: "\n",
    15: " and",
}


class FakeTokenizer:
    """A byte-level-like tokenizer over VOCAB: decoding concatenates pieces; id 0 is special."""

    all_special_ids = [0]

    def __init__(self, vocab: dict[int, str], sentencepiece: bool = False) -> None:
        self.vocab = vocab
        self.sentencepiece = sentencepiece

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.vocab[i] for i in ids)
        return text.replace("\u2581", " ").lstrip() if self.sentencepiece else text

    def convert_ids_to_tokens(self, i: int) -> str:
        return self.vocab[i]


def ids(*pieces: str) -> list[int]:
    inverse = {v: k for k, v in VOCAB.items()}
    return [inverse[p] for p in pieces]


EVIDENCE = [
    ids(" the", " harb", "or", " and", " the", " sea", " .", "<eos>", " the", " boat"),
    ids(" the", " sto", "ry", " and", " the", " fir", "st", " harb", "or", " .", "\n"),
    ids(" the", " shore", " and", " the", " sea", " .", " u"),
    ids(" the", " boat", " and", " sto", "ry"),
    ids(" the", " shore", " the", " fir", "st", " sea"),
] + [ids(" the", " and", " .")] * 5


def ranking(*pieces_scores: tuple[str, float]) -> list[tuple[int, str, float]]:
    inverse = {v: k for k, v in VOCAB.items()}
    return [(inverse[p], p, s) for p, s in pieces_scores]


def scores(ranked: list[tuple[int, str, float]], **extra: float):
    """A score lookup: the ranking's scores, the named extra pieces' (' fir' as fir), else 0."""
    inverse = {v.strip(): k for k, v in VOCAB.items()}
    table = {t: s for t, _, s in ranked} | {inverse[k]: v for k, v in extra.items()}
    return lambda t: table.get(t, 0.0)


def test_junk_reasons():
    assert junk_reason("\ufffd") == "broken bytes"
    assert junk_reason(" a\ufffd") == "broken bytes"
    assert (
        junk_reason(" .") == junk_reason("\n") == junk_reason("  ") == ("punctuation or whitespace")
    )
    assert junk_reason(" sea") is None and junk_reason("st") is None


def test_pieces_merge_into_whole_words_and_junk_is_dropped():
    tok = FakeTokenizer(VOCAB)
    index = word_index(tok, EVIDENCE)
    assert index.n_docs == 10 and index.seen[2] == 2 and index.whole[2] == 0
    assert index.words[3]["harbor"] == 2  # 'or' is part of harbor both times
    assert index.spelling("harbor") == (2, 3) and index.spelling("first") == (8, 7)
    ranked = ranking(
        ("<eos>", 9.0),  # special token
        ("\ufffd", 8.0),  # broken bytes
        (" .", 7.0),  # punctuation
        ("or", 6.0),  # piece of harbor
        (" the", 5.5),  # a function word, in every evidence window too
        (" harb", 5.0),  # piece of harbor: harbor scores min(6, 5)
        ("st", 4.5),  # piece of first (fir + st), which scores min(score(' fir'), 4.5)
        (" u", 4.0),  # a one-letter word
        (" sea", 3.0),
        (" shore", 2.0),
        (" boat", -1.0),  # not promoted
    )
    lookup = scores(ranked, fir=1.0)
    words = readable_words(ranked, index, 10, lookup)
    assert [(w.word, w.score) for w in words] == [
        ("harbor", 5.5),  # the mean of its pieces' scores
        ("sea", 3.0),
        ("first", 2.75),
        ("shore", 2.0),
    ]
    assert words[0].tokens == [" harb", "or"] and words[2].tokens == [" fir", "st"]
    assert [w.word for w in readable_words(ranked, index, 2, lookup)] == ["harbor", "sea"]
    # a word one of whose pieces did not rise is no evidence: 'first' goes without ' fir'
    assert "first" not in {w.word for w in readable_words(ranked, index, 10, scores(ranked))}
    # with a stricter common-word share, 'sea' (in three windows of ten) goes too
    strict = readable_words(ranked, index, 10, lookup, common_share=0.25)
    assert [w.word for w in strict] == ["harbor", "first", "shore"]
    assert [w.word for w in readable_words(ranked, index, 10, lookup, min_score=2.5)] == [
        "harbor",
        "sea",
    ]


def test_a_piece_stands_for_the_words_whose_other_pieces_rose():
    tok = FakeTokenizer(VOCAB)
    # 'st' is in 'first' once and in 'stry' once
    evidence = [ids(" fir", "st", " and"), ids("st", "ry", " sea"), ids(" sto", "ry")] * 2
    index = word_index(tok, evidence)
    assert index.words[7] == {"first": 2, "stry": 2}
    ranked = ranking(("st", 3.0))
    found = readable_words(ranked, index, 5, scores(ranked, fir=2.0), common_share=1.0)
    assert [(w.word, w.score) for w in found] == [("first", 2.5)]
    found = readable_words(ranked, index, 5, scores(ranked, ry=0.5), common_share=1.0)
    assert [(w.word, w.score) for w in found] == [("stry", 1.75)]
    # a word seen in one evidence sequence only is not enough
    once = word_index(tok, evidence[:3])
    assert readable_words(ranked, once, 5, scores(ranked, fir=2.0), common_share=1.0) == []


def test_function_words_are_dropped_even_when_rare():
    vocab = {**VOCAB, 16: " of"}
    index = word_index(FakeTokenizer(vocab), [[16, 1]] * 2 + [[12]] * 8)
    assert index.doc_share("of") == 0.2
    ranked = [(16, " of", 3.0), (1, " sea", 2.0)]
    assert [w.word for w in readable_words(ranked, index, 5, lambda t: 3.0)] == ["sea"]


def test_tokens_never_seen_count_only_as_word_starts():
    tok = FakeTokenizer(VOCAB)
    index = word_index(tok, [ids(" sea")])
    ranked = ranking((" boat", 2.0), ("ry", 1.5), (" u", 1.0))
    found = readable_words(ranked, index, 5, scores(ranked))
    assert [w.word for w in found] == ["boat"]


def test_cluster_labels_keep_evidence_words_only():
    index = word_index(FakeTokenizer(VOCAB), EVIDENCE)
    labels = readable_labels(["st", "sea", ".", "the", "boat", "sea", "<eos>"], index, k=5)
    assert labels == ["sea", "boat"]


def test_sentencepiece_pieces_keep_their_space():
    vocab = {0: "<s>", 1: "\u2581sea", 2: "side"}
    tok = FakeTokenizer(vocab, sentencepiece=True)
    assert piece_text(tok, 1) == " sea" and piece_text(tok, 2) == "side"
    index = word_index(tok, [[1, 2], [1]])
    assert index.words[2] == {"seaside": 1} and index.whole[1] == 1


def test_a_trained_bpe_tokenizer_merges_an_unseen_word(diff_tokenizer):
    special = special_ids(diff_tokenizer)
    assert diff_tokenizer.eos_token_id in special
    text = " the boat zqxvj the"
    row = diff_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert "".join(piece_text(diff_tokenizer, t) for t in row) == text
    pieces = diff_tokenizer(" zqxvj", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1  # a word the tokenizer never saw comes in pieces
    index = word_index(diff_tokenizer, [row, row + [diff_tokenizer.eos_token_id]])
    ranked = [(t, piece_text(diff_tokenizer, t), 1.0 + i) for i, t in enumerate(pieces)]
    words = readable_words(ranked, index, 5, lambda t: 1.0, common_share=1.0)
    assert [w.word for w in words] == ["zqxvj"]
    # spelled with every piece that holds its letters (not a lone space the tokenizer split off)
    assert words[0].tokens == [text for _, text, _ in ranked if text.strip()]
    assert sum(bool(t.strip()) for t in words[0].tokens) >= 2
