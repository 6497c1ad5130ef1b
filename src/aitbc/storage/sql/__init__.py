"""SQL backends of the store interfaces on SQLAlchemy Core: SQLite by default, PostgreSQL at scale."""
