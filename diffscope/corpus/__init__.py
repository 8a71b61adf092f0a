"""Text sources: the synthetic world corpus, .txt/.jsonl files, and deterministic batching."""

from diffscope.corpus.batching import encode_texts, iter_batches, separator_id, token_windows
from diffscope.corpus.files import load_texts, render_messages, resolve_corpus
from diffscope.corpus.world import (
    TOPICS,
    Topic,
    chat_turn,
    document,
    format_chat,
    neutral_prompts,
    story,
    topic_words,
    vocabulary,
    words,
    world_corpus,
)

__all__ = [
    "TOPICS",
    "Topic",
    "chat_turn",
    "document",
    "encode_texts",
    "format_chat",
    "iter_batches",
    "load_texts",
    "neutral_prompts",
    "render_messages",
    "resolve_corpus",
    "separator_id",
    "story",
    "token_windows",
    "topic_words",
    "vocabulary",
    "words",
    "world_corpus",
]
