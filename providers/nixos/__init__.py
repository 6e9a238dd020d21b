"""The NixOS system: its generations, the desired state the module reads, and the rebuild units."""
