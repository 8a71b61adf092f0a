"""The diffing engine: pure-torch primitives that find what a fine-tune changed. Knows nothing of MCP
or agents; everything takes a ModelPair and a corpus (texts or token windows)."""
