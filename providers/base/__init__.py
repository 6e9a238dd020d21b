"""The Protocols and plain frozen dataclasses of the outside world: server, DNS, storage and
backups. Adapters implement them; handlers use only these."""
