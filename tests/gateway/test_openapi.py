"""The gateway's OpenAPI document describes every route and declares both auth schemes."""

from typing import Any

from services.gateway.app import create_app
from tests.conftest import ScicatApi
from tests.gateway.conftest import gateway_settings


class _NoS3:
    endpoint = "http://127.0.0.1:9"
    access_key = "x"
    secret_key = "y"


def openapi() -> dict[str, Any]:
    """The app's own document, built without starting anything."""
    app = create_app(gateway_settings("nats://127.0.0.1:9", _NoS3(), ScicatApi("http://x/api")))
    return app.openapi()


def test_every_operation_has_a_description() -> None:
    """A reader of the document learns what each route does, /s3/* included."""
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in openapi()["paths"].items()
        for method, operation in operations.items()
        if not operation.get("description")
    ]

    assert undocumented == []


def test_the_job_routes_declare_basic_and_bearer_and_uploads_bearer() -> None:
    """SciCat's url action uses Basic (or a token); the Ingestor a bearer upload token."""
    document = openapi()
    schemes = {
        name: (scheme["type"], scheme["scheme"])
        for name, scheme in document["components"]["securitySchemes"].items()
    }
    job_post = document["paths"]["/archiver/api/v1/archiver/jobs"]["post"]
    finalize = document["paths"]["/archiver/api/v1/s3/finalizeDatasetUpload"]["post"]

    assert ("http", "basic") in schemes.values()
    assert ("http", "bearer") in schemes.values()
    assert {schemes[name][1] for entry in job_post["security"] for name in entry} == {
        "basic",
        "bearer",
    }
    assert {schemes[name][1] for entry in finalize["security"] for name in entry} == {"bearer"}
