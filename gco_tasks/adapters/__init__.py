"""The adapters: DynamoDB, Kubernetes, the region's Redis (locks, marks, the write budget, stream
positions), Kubernetes Events, Prometheus metrics and log lines. Each satisfies a port of ``core.ports``
and translates its library's errors into ``core.errors``; none imports a flow."""
