"""The results store: its tables, opening it on SQLite or PostgreSQL, and views over it."""
