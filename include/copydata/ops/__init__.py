"""Operations over one application: snapshot, log backup, clone, refresh, delete, restore, retention.

The same functions serve the Airflow operators, the CLI and the tests. They take an
AppContext (array, host connector, engine, catalog) and are safe to retry.
"""
