"""Fake ``systemctl``, ``journalctl``, ``nixos-rebuild`` and ``nix`` executables for the tests.

The executables are stdlib-only Python scripts; their shared logic is in ``_fakesys``.
"""
