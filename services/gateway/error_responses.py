"""Domain errors become HTTP answers in one place: status, `detail` sentence, headers."""

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.gateway.errors import GatewayError, NotAuthenticated

log = structlog.get_logger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors -> their status and a `detail` sentence; never an internal message."""

    @app.exception_handler(GatewayError)
    async def on_gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
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
        log.info(
            "request.refused", status=exc.status_code, detail=exc.detail, path=request.url.path
        )
        return JSONResponse(body, status_code=exc.status_code, headers=headers)
