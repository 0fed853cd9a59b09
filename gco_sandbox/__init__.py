"""Local stand-ins for the parts a region runs against: Redis, DynamoDB (moto) and a Kubernetes API
server. They serve the tests, the benchmarks and ``gco-tasks sandbox``; none of them is for production."""
