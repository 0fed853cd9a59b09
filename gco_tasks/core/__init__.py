"""The pure core: records and their fields, names, errors, settings, rendering, and the decisions of
every flow (plan, status, rollout, drift, triage). No I/O and no I/O library: the flows feed it what
they read through the ports (``core.ports``) it declares."""
