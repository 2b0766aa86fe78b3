"""The embedded development stack: real nats-server, moto S3, the SciCat stand-in, the services.

Used by `archiver dev`, `make demo` and the test fixtures. Not deployed.
"""
