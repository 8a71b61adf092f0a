"""The built-in organisms, one unit each: `NAME.yaml` (the organism and its ground truth) and, for
the toy zoo's fine-tunes, `NAME.py` (its recipe: narrow training texts and behavioural check)."""
