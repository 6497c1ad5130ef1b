"""Storage interfaces (what services depend on) and their SQL backends (``storage.sql``)."""
