"""The innate detection layer: the engine that runs the cells and turns their findings into threats."""
