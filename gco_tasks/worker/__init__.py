"""The worker: the Celery app and its tasks, beat, the composition root (``fleet``), start-up checks,
the process's metrics exporter and telemetry, and Flower's login guard. It hands each flow this
process's adapters."""
