"""The outside world behind Protocols that return plain frozen dataclasses.

Each area has a real adapter and an in-memory fake with failure injection; the fakes also
power demo mode.
"""
