"""Branch and bound: over the input box, and over ReLU phases."""
