"""Sound bounds on pre-activations: interval, symbolic (CROWN-style) and MILP encodings."""
