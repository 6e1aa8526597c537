"""The ECS target: task definitions derived and reused, RunTask, CloudWatch Logs, reattach."""
