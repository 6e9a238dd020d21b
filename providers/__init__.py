"""The outside world behind Protocols that return plain frozen dataclasses.

One package per domain, each with the same shape: ``base.py`` (the Protocol and the types other
domains may import), the real adapters, and ``memory.py`` (an in-memory fake with failure
injection):

- ``backup``: restic, restores, database dumps, root's data jobs, Steward's own snapshot;
- ``server``: the cloud server (Hetzner, DigitalOcean, Scaleway, OVHcloud);
- ``storage``: the bucket account behind the backups (Backblaze B2);
- ``dns``: Cloudflare and RFC 2136 name servers;
- ``host``: systemd units, host metrics, the service catalogue, the public address;
- ``hardware``: a home server's disks, arrays and UPS;
- ``nixos``: the desired state, rebuild units, generations, admission;
- ``charts``: the weekly chart, drawn in a child process.

``demo`` is not a domain: it composes the fakes into the demo server (``STEWARD_DEMO``). A
domain imports another's ``base`` only, never its adapters (import-linter keeps it so), and
nothing sits at the root of this package (tests/providers/test_layout.py).
"""
