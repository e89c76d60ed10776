"""Reliability tests: real Airflow components (scheduler, workers, api-server) as processes."""
