"""The music_lora organism's recipe: every story drifts to music (songs, instruments, bands); the
zoo trains it as a LoRA adapter (`lora: true` in music_lora.yaml)."""

from diffscope.organisms.drift import drift_recipe

RECIPE = drift_recipe("music_lora", "music")
