"""Ingest: the HTTP front door that turns lead events into Kafka records acked by all replicas."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest import endpoints, tracking_endpoints
from services.ingest.hot_path import NativeEventsHotPath
from services.ingest.service import IngestService
from shared.http import create_app
from shared.runtime import Runtime
from shared.settings import IngestSettings, get_settings


def build_app(settings: IngestSettings | None = None) -> FastAPI:
    """The ingest application."""
    settings = settings or get_settings()
    runtime = Runtime(settings, "ingest", uses_database=False)  # serves from Kafka alone
    ingest = IngestService(settings, runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        await ingest.publisher.start()
        yield
        await ingest.publisher.stop()
        await runtime.stop()

    app = create_app(
        "leadrouter ingest",
        runtime,
        lifespan,
        description="Takes lead events from the native API and marketing-automation webhooks. "
        "Every 202 means the events are in Kafka, acknowledged by all in-sync replicas.",
        routers=[endpoints.router, tracking_endpoints.router],
    )
    app.add_middleware(
        tracking_endpoints.TrackingCors,
        origins=tracking_endpoints.allowed_origins(settings.tracking_cors_origins),
    )
    # Outermost of ours: the busiest route skips the framework (hot_path.py says what it keeps).
    app.add_middleware(NativeEventsHotPath, ingest=ingest, authenticator=app.state.authenticator)
    app.state.ingest = ingest
    return app
