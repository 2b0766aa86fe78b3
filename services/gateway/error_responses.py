"""Domain errors become HTTP answers in one place: status, `detail` sentence, headers."""

import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.gateway.errors import GatewayError, NotAuthenticated

log = structlog.get_logger(__name__)


def error_response(exc: GatewayError, path: str) -> JSONResponse:
    """A domain error's answer: its status, a `detail` sentence, never an internal message."""
    headers = (
        {"WWW-Authenticate": getattr(exc, "challenge", "Bearer")}
        if isinstance(exc, NotAuthenticated)
        else None
    )
    if exc.status_code == 422:
        # FastAPI's validation shape: the Ingestor reads detail[].msg on a 422.
        body: dict = {"detail": [{"loc": ["body"], "msg": exc.detail, "type": "value_error"}]}
    else:
        body = {"detail": exc.detail, **exc.extra}
        if exc.status_code == 507:
            body["message"] = exc.detail  # the reference's UploadRequestUnsuccessfulResp
    log.info("request.refused", status=exc.status_code, detail=exc.detail, path=path)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by its name, so it can be sent as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors -> their status and a `detail` sentence; validation errors -> 422."""

    @app.exception_handler(GatewayError)
    async def on_gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 shape, but the rejected input may be NaN or Infinity
        # (Python's JSON parser reads them), which strict JSON cannot carry back.
        errors = finite(jsonable_encoder(exc.errors()))
        log.info("request.invalid", status=422, path=request.url.path, errors=len(errors))
        return JSONResponse({"detail": errors}, status_code=422)
