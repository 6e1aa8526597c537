"""Where a container runs: the worker's Docker engine or AWS ECS, behind one small interface.

A target starts a :class:`~airdock.targets.spec.ContainerSpec` for a
:class:`~airdock.targets.spec.TaskIdentity`, finds what an earlier attempt of that identity left
running (reattach), follows it to its end (log lines and an :class:`~airdock.targets.spec.Outcome`)
and stops it. The core takes plain values and clients (boto3, docker), never Airflow.
"""
