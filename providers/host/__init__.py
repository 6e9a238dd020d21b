"""The machine itself: systemd units, host metrics, the service catalogue and its public address."""
