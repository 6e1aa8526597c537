"""The offline ECR-compatible stack: a real Distribution registry behind an ECR-semantics gateway,
plus a subset of the ECR API.

- ``settings``: where the stack lives and listens (``StackSettings``, persisted as ``stack.json``).
- ``store``: control-plane state in SQLite (repositories, lifecycle policies, token hashes, counters).
- ``registry``: read-only views and deletions on the Distribution registry's storage.
- ``api``: the ECR JSON 1.1 API (Starlette app).
- ``gateway``: the auth gateway in front of the registry (Starlette app, streaming).
- ``server``: one process serving ``api`` and ``gateway``.
- ``stack``: starts, stops and inspects the processes (``airdock local ...``).
- ``cluster``: a local distributed Airflow around the stack (``scripts/cluster.sh``): PostgreSQL,
  Redis, the CeleryExecutor and two worker "hosts"; and a client of its REST API for tests.
"""
