"""Test tooling that tests, benchmarks and `make chaos` share (never imported by the services).

It lives beside `shared/` rather than in it because `shared/` is what the services run:
starting processes, breaking brokers and generating traffic has no place in a deployment.
"""
