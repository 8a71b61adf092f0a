"""Organisms: base/fine-tune pairs with a known change, their registry and the offline toy zoo."""
