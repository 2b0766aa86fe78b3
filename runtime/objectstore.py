"""The S3 client (MinIO SDK) built from settings; one per process."""

from minio import Minio

from runtime.settings import S3Settings


def s3_client(settings: S3Settings) -> Minio:
    endpoint = settings.endpoint
    host = endpoint.host or ""
    return Minio(
        f"{host}:{endpoint.port}" if endpoint.port else host,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=endpoint.scheme == "https",
        region=settings.region,
    )
