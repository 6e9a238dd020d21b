"""The composition root: config, wiring, transports, storage and the command-line entry point."""
