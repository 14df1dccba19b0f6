"""The command-line interfaces: ``leo`` and ``leo-vnnlib``."""
