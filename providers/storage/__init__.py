"""The bucket account behind the backups: the BackupStorage protocol (base), Backblaze B2, and
the in-memory fake (memory)."""
