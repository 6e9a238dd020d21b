"""The composition root: config, wiring, transports, storage and the command-line entry point."""

# pyproject.toml's version: a test keeps them equal. Not importlib.metadata, which would be
# one more import at every start for a line that `steward --version` alone prints.
__version__ = "0.1.0"
