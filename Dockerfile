# One image for all five services: `archiver run <service>` picks the process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOG_FORMAT=json
WORKDIR /app

COPY pyproject.toml requirements.lock ./
COPY contracts ./contracts
COPY runtime ./runtime
COPY services ./services
COPY devstack ./devstack
COPY archiver ./archiver
RUN pip install --no-cache-dir -c requirements.lock . \
    && useradd --system --uid 10001 archiver
USER archiver

ENTRYPOINT ["archiver"]
CMD ["--help"]
