"""Start one service in this process: settings, logging, then its app until SIGTERM."""

import asyncio
import enum
import importlib
import signal
import sys


class Service(enum.StrEnum):
    gateway = "gateway"
    datablocker = "datablocker"
    ltsmover = "ltsmover"
    verifier = "verifier"
    scicat_sync = "scicat_sync"


_SETTINGS_CLASS = {
    Service.gateway: "GatewaySettings",
    Service.datablocker: "DatablockerSettings",
    Service.ltsmover: "LtsMoverSettings",
    Service.verifier: "VerifierSettings",
    Service.scicat_sync: "ScicatSyncSettings",
}


def settings_class(service: Service) -> type:
    module = importlib.import_module(f"services.{service.value}.settings")
    return getattr(module, _SETTINGS_CLASS[service])


def run_service(service: Service) -> None:
    # Imported here so `archiver --help` does not import every service.
    from runtime.logs import configure_logging
    from runtime.settings import load

    settings = load(settings_class(service))
    configure_logging(settings.log, service.value)
    app_module = importlib.import_module(f"services.{service.value}.app")
    app = app_module.create_app(settings)
    if service is Service.gateway:
        import uvicorn

        # uvicorn handles SIGTERM (stops accepting, finishes requests, runs the
        # lifespan exit), then re-raises the signal to the handler it found: make
        # that one a clean exit, so a graceful stop reports status 0.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    else:
        # FastStream handles SIGTERM/SIGINT: stops fetching, waits for the running
        # handler up to its graceful timeout, then closes the connection.
        asyncio.run(app.run())
