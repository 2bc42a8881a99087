"""The baseline for ingest: a bare FastAPI endpoint that parses the JSON body and answers 202."""

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/events")
async def events(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    return JSONResponse({"accepted": len(body) if isinstance(body, list) else 1}, status_code=202)
