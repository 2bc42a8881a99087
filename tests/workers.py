"""Which pytest-xdist worker runs this process, and the ports that worker's own servers use.

`make test` runs the suite on several workers (pyproject's addopts). Databases and topics are
already per test; a server a test starts on a fixed port (the pausable Kafka, the fault run's
Kafka and PostgreSQL) gets the port `base + PORT_STRIDE * worker`, so two workers never meet.
"""

import os

# Kafka takes two ports (the listener and the controller on port + 1); 10 leaves room, and the
# fault run's bases (19092, 15432) stay clear of the pausable Kafka's (19192) up to 10 workers.
PORT_STRIDE = 10


def worker_index() -> int:
    """0 for the first xdist worker (gw0) and for a run without xdist, 1 for gw1, ..."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw")) if worker.startswith("gw") else 0


def worker_port(base: int) -> int:
    """This worker's port for a server whose port is `base` on the first worker."""
    return base + PORT_STRIDE * worker_index()
