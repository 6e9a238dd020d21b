"""What Steward can do: pure domain code, one module per area.

Handlers take a ``Command`` and the providers they need, and answer with ``Reply`` objects.
They never import a transport, the database or an SDK; ``bot`` wires them up.
"""
