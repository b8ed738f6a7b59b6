"""The results store: its tables, opening it on SQLite or PostgreSQL, and views over it.

Where the store is when no `--db` names one is declared here, apart from the database
code, so that a command's help can say it without importing SQLAlchemy.
"""

#: The SQLite file a run writes to in the working directory when neither `--db` nor the variable says.
DEFAULT_DB = "persona-runner.db"
#: The environment variable that names the store (a path or a URL) when `--db` is not given.
ENV_DB = "PERSONA_RUNNER_DB"
