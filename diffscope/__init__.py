"""diffscope: find what a fine-tune changed by diffing it against its base model."""

__version__ = "0.1.0"
