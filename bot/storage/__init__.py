"""State in SQLAlchemy: SQLite by default, PostgreSQL through STEWARD_DATABASE_URL."""
