"""The flows: fan-out, reconcile (with observe and adoption), watchdog, purge and stream poll. Each
reads and writes only through the ports of ``core.ports`` and decides with the pure core; none
imports an adapter, Celery or an I/O library."""
