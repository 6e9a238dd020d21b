"""Backups: the BackupEngine protocol (base), restic, restores, database dumps, root's data jobs,
Steward's own snapshot, and the in-memory fake (memory)."""
