"""What the tests and the benchmarks share: servers, clients, scratch databases, fixtures."""
