"""What can go wrong in `archiver ingest`, as exceptions whose message the user can act on.

IngestError                 anything that stops an ingest (message for the user)
├── ServiceRefused          SciCat or the gateway answered 4xx: retrying will not help
├── ServiceUnavailable      5xx/429 or no answer: retried with backoff, then raised
└── UploadCancelled         Ctrl-C (or the caller's cancel event)
    └── IngestInterrupted   ... after the SciCat dataset was registered: it names the dataset
"""


class IngestError(Exception):
    """An ingest stopped; `str()` is a sentence for the user."""


class ServiceRefused(IngestError):
    def __init__(self, service: str, status: int, detail: str) -> None:
        self.service = service
        self.status = status
        self.detail = detail
        super().__init__(f"{service} refused the request ({status}): {detail}")


class ServiceUnavailable(IngestError):
    def __init__(self, service: str, status: int, detail: str) -> None:
        self.service = service
        self.status = status
        self.detail = detail
        super().__init__(f"{service} is unavailable ({status}): {detail}")


class UploadCancelled(IngestError):
    def __init__(self) -> None:
        super().__init__("the upload was cancelled")


class IngestInterrupted(UploadCancelled):
    """Interrupted after registering the SciCat dataset `pid`, which stays (not finalized)."""

    def __init__(self, pid: str) -> None:
        self.pid = pid
        Exception.__init__(self, f"the upload into SciCat dataset {pid} was interrupted")
