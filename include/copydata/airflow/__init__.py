"""The Airflow side of copydata: hooks, operators and provider metadata."""
