"""airdock: run private-registry container images as Airflow tasks, with no credential upkeep."""

__version__ = "0.1.0"
