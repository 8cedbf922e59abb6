"""The dataset-card templates `condense export` renders; installed as the package `condense.cards` so that wheels carry them."""
