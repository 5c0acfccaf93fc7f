"""What operators run and watch: readiness, metrics, logs, backups, graceful shutdown.

Adapters over the rest (docs/operations.md): nothing here decides a SPEC rule.
"""
