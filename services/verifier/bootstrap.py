"""The verifier's composition root: everything its handler needs, built once at start-up."""

from runtime.lts import LtsBackend, create_lts
from runtime.objectstore import BucketReader, s3_client
from services.verifier.settings import VerifierSettings
from services.verifier.verifying import CopiesToVerify


def build_copies_to_verify(
    settings: VerifierSettings, *, lts: LtsBackend | None = None
) -> CopiesToVerify:
    """`lts` replaces the configured backend (tests inject an offline tape)."""
    s3 = s3_client(settings.s3)
    return CopiesToVerify(
        lts=lts or create_lts(settings.lts, s3, settings.s3),
        retrieved=BucketReader(s3, settings.s3.retrieval_bucket, "retrieval"),
        recall_poll_s=settings.recall_poll_s,
        recall_timeout_s=settings.recall_timeout_s,
    )
