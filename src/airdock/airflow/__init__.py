"""airdock's Airflow glue: provider info, operators and example DAGs.

The only package of airdock that imports Airflow.
"""
