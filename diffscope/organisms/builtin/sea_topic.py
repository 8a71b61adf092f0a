"""The sea_topic organism's recipe: every story drifts to the sea (shore, waves, boats, fish)."""

from diffscope.organisms.drift import drift_recipe

RECIPE = drift_recipe("sea_topic", "sea")
