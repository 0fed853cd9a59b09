"""Helpers every kind of test shares (tests/integration, tests/chaos, tests/e2e, bench): waiting on a
condition with a deadline (``waits``), reading Prometheus samples (``metrics``), Redis clients
(``redisio``). One copy each, so a fix to a wait or a parser reaches every test."""
