"""Tools around the worker: local broker, replay, tail, demo, and the worker-process harness shared by tests, benchmarks and the demo."""
