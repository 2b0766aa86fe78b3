"""`archiver`: one command for services, the dev stack and operator tools."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from archiver.running import Service, run_service

if TYPE_CHECKING:
    from rich.console import Console

    from runtime.settings import NatsSettings

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Archive scientific datasets to long-term storage.",
)


@app.callback()
def _log_to_terminal_without_secrets() -> None:
    # Every command: library warnings (retries) on stderr, secrets redacted.
    from archiver.terminal_logging import configure_terminal_logging

    configure_terminal_logging()


@app.command()
def run(service: Annotated[Service, typer.Argument(help="Which service to run.")]) -> None:
    """Run one service in the foreground until SIGTERM or Ctrl-C."""
    run_service(service)


@app.command()
def dev(
    state_dir: Annotated[Path, typer.Option(help="Where the stack keeps its state.")] = Path(
        "var/dev"
    ),
    ports: Annotated[
        str, typer.Option(help="'default' (8000, 3000, 9000, 4222) or 'auto' (free ports).")
    ] = "default",
    check: Annotated[
        bool, typer.Option("--check", help="Start, report health, then stop (the demo).")
    ] = False,
) -> None:
    """Start NATS, S3 (moto), the SciCat stand-in and all five services in the foreground."""
    from devstack.stack import run_dev_stack

    raise typer.Exit(run_dev_stack(state_dir.resolve(), ports=ports, check_only=check))


# Options shared by the client commands (ingest, retrieve).
ScicatUrl = Annotated[
    str | None, typer.Option(help="SciCat API base, e.g. https://scicat.example.org/api.")
]
ScicatUser = Annotated[
    str | None, typer.Option(envvar="ARCHIVER_SCICAT_USERNAME", help="SciCat user.")
]
ScicatPassword = Annotated[
    str | None,
    typer.Option(envvar="ARCHIVER_SCICAT_PASSWORD", help="SciCat password (or the env var)."),
]


@app.command()
def ingest(
    folder: Annotated[Path, typer.Argument(help="The dataset's folder (every file below it).")],
    owner_group: Annotated[str, typer.Option(help="SciCat ownerGroup of the new dataset.")],
    stack: Annotated[
        Path | None, typer.Option(help="A dev stack's stack.json: URLs and the ingestor user.")
    ] = None,
    scicat_url: ScicatUrl = None,
    gateway_url: Annotated[
        str | None, typer.Option(help="Archiver API base, e.g. https://host/archiver/api/v1.")
    ] = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
    archive: Annotated[
        bool, typer.Option("--archive", help="Ask for the archive job when finalizing.")
    ] = False,
    chunk_size: Annotated[
        str, typer.Option(help="Files above this go multipart, in parts this big.")
    ] = "128MiB",
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Concurrent PUTs.")] = 4,
    name: Annotated[str | None, typer.Option(help="datasetName (default: the folder's).")] = None,
    contact_email: Annotated[str | None, typer.Option(help="Default: your SciCat email.")] = None,
) -> None:
    """Register FOLDER as a raw dataset in SciCat, upload it, finalize it; print its pid."""
    from archiver.ingest_display import ingest_command

    raise typer.Exit(
        ingest_command(
            folder,
            owner_group=owner_group,
            stack=stack,
            scicat_url=scicat_url,
            gateway_url=gateway_url,
            username=username,
            password=password,
            archive=archive,
            chunk_size=chunk_size,
            parallel=parallel,
            name=name,
            contact_email=contact_email,
        )
    )


@app.command()
def retrieve(
    pid: Annotated[str, typer.Argument(help="The dataset's pid.")],
    to: Annotated[Path, typer.Option("--to", help="Unpack the dataset's files here.")],
    stack: Annotated[
        Path | None, typer.Option(help="A dev stack's stack.json: URLs and accounts.")
    ] = None,
    scicat_url: ScicatUrl = None,
    gateway_url: Annotated[
        str | None, typer.Option(help="Archiver API base, for per-dataset progress.")
    ] = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
    job_user: Annotated[
        str | None, typer.Option(envvar="ARCHIVER_JOB_USER", help="Gateway job user (optional).")
    ] = None,
    job_password: Annotated[
        str | None,
        typer.Option(envvar="ARCHIVER_JOB_PASSWORD", help="Gateway job password (optional)."),
    ] = None,
    owner_group: Annotated[
        str | None, typer.Option(help="The job's ownerGroup (default: the dataset's).")
    ] = None,
    timeout: Annotated[
        str, typer.Option(help="Give up following the job after this long (90s, 30m, 2h).")
    ] = "2h",
    poll: Annotated[str, typer.Option(help="How often to ask SciCat about the job.")] = "2s",
) -> None:
    """Create a SciCat retrieve job for PID, download, unpack and verify every file into --to."""
    from archiver.retrieve_display import retrieve_command

    raise typer.Exit(
        retrieve_command(
            pid,
            to=to,
            stack=stack,
            scicat_url=scicat_url,
            gateway_url=gateway_url,
            username=username,
            password=password,
            job_user=job_user,
            job_password=job_password,
            owner_group=owner_group,
            timeout=timeout,
            poll=poll,
        )
    )


@app.command("subjects-doc")
def subjects_doc(
    output: Annotated[Path, typer.Option(help="Write here instead of stdout.")] = Path("-"),
) -> None:
    """Print (or write) the Markdown table of subjects, streams and consumers."""
    from contracts.document import render_subjects_markdown

    text = render_subjects_markdown()
    if str(output) == "-":
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


@app.command("asyncapi-doc")
def asyncapi_doc(
    output: Annotated[Path, typer.Option(help="Write here instead of stdout.")] = Path("-"),
) -> None:
    """Print (or write) the AsyncAPI 3.0 document of the bus: subjects, payloads, who sends
    and who receives each."""
    from contracts.asyncapi import render_asyncapi_yaml

    text = render_asyncapi_yaml()
    if str(output) == "-":
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


@app.command("nats-config")
def nats_config(
    output_dir: Annotated[Path, typer.Option(help="Write the files here.")] = Path("deploy"),
    tls_cert_file: Annotated[
        Path | None, typer.Option(help="Servers require TLS with this certificate (PEM).")
    ] = None,
    tls_key_file: Annotated[Path | None, typer.Option(help="The certificate's key.")] = None,
) -> None:
    """Write the nats-server configuration (users, permissions, cluster) from the contracts."""
    from runtime.nats_server_config import ServerTls, deploy_files

    if (tls_cert_file is None) != (tls_key_file is None):
        raise typer.BadParameter("give both --tls-cert-file and --tls-key-file, or neither")
    tls = ServerTls(tls_cert_file, tls_key_file) if tls_cert_file and tls_key_file else None
    for name, text in deploy_files(tls).items():
        (output_dir / name).write_text(text)
        typer.echo(f"wrote {output_dir / name}")


@app.command()
def provision() -> None:
    """Create or update the bus's streams, durable consumers and KV buckets, then exit.

    Runs as the provisioner user (NATS_URL, NATS_USER, NATS_PASSWORD, NATS_STREAM_REPLICAS);
    waits up to a minute for the servers. Services cannot create these themselves.
    """
    import asyncio

    from runtime.logs import configure_logging
    from runtime.provisioning import provision_bus
    from runtime.settings import LogSettings, NatsSettings, load

    configure_logging(load(LogSettings), "provision")
    asyncio.run(provision_bus(load(NatsSettings)))


@app.command("config-doc")
def config_doc(
    output: Annotated[Path, typer.Option(help="Write here instead of stdout.")] = Path("-"),
) -> None:
    """Print (or write) the Markdown reference of every environment variable."""
    from archiver.configuration import render_configuration_markdown

    text = render_configuration_markdown()
    if str(output) == "-":
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


# --- operator recovery tools: dead letters, replay, status ---------------------

NatsUrlOption = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        help="NATS server URL(s). Default: NATS_URL, else var/dev/stack.json, else localhost.",
    ),
]

dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, retry, drop.")
app.add_typer(dlq_app, name="dlq")


def _operate(run: "Callable[[NatsSettings, Console], int]", nats_url: str | None) -> None:
    """Run an operator command as the operator user on the resolved NATS; exit with its code."""
    from rich.console import Console

    from archiver.operator_bus import BusUnreachableError, OperatorSettings, resolve_operator_bus
    from runtime.redaction import redact_text

    console = Console()
    try:
        code = run(resolve_operator_bus(nats_url, OperatorSettings()), console)
    except BusUnreachableError as exc:
        console.print(redact_text(str(exc)), markup=False, highlight=False)
        code = 1
    raise typer.Exit(code)


@dlq_app.command("list")
def dlq_list(nats_url: NatsUrlOption = None) -> None:
    """List dead letters (and the server's max-deliveries advisories), oldest first."""
    from archiver import deadletters

    _operate(deadletters.list_command, nats_url)


@dlq_app.command("show")
def dlq_show(
    n: Annotated[int, typer.Argument(help="The dead letter's number (N in `dlq list`).")],
    nats_url: NatsUrlOption = None,
) -> None:
    """Show dead letter N and the original message it points at."""
    from archiver import deadletters

    _operate(lambda url, console: deadletters.show_command(url, n, console), nats_url)


@dlq_app.command("retry")
def dlq_retry(
    n: Annotated[int | None, typer.Argument(help="The dead letter's number.")] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    nats_url: NatsUrlOption = None,
) -> None:
    """Re-publish the original of dead letter N (or of all) to its subject, then remove it."""
    from archiver import deadletters

    if (n is None) == (not retry_all):
        raise typer.BadParameter("give either N or --all")
    _operate(lambda url, console: deadletters.retry_command(url, n, console), nats_url)


@dlq_app.command("drop")
def dlq_drop(
    n: Annotated[int, typer.Argument(help="The dead letter's number.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    nats_url: NatsUrlOption = None,
) -> None:
    """Remove dead letter N without retrying it."""
    from archiver import deadletters

    def confirm(question: str) -> bool:
        return yes or typer.confirm(question)

    _operate(
        lambda url, console: deadletters.drop_command(url, n, console, confirm=confirm), nats_url
    )


@app.command()
def replay(
    job: Annotated[str | None, typer.Option(help="Events of this job id.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Events of this dataset pid.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Stored since: ISO 8601 (UTC if no offset) or e.g. 2h.")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject (wildcards ok).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print, publish nothing.")] = False,
    nats_url: NatsUrlOption = None,
) -> None:
    """Re-publish selected events from the ARCHIVER log (handlers are idempotent)."""
    from datetime import UTC, datetime

    from archiver.durations import parse_point_in_time
    from archiver.replaying import ReplaySelection, replay_command

    try:
        start = parse_point_in_time(since, datetime.now(UTC)) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    selection = ReplaySelection(job_id=job, pid=dataset, subject=subject, since=start)
    _operate(
        lambda url, console: replay_command(url, selection, dry_run=dry_run, console=console),
        nats_url,
    )


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="One job's detail.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Finished jobs too.")] = False,
    stuck_after: Annotated[
        str, typer.Option(help="Flag STUCK after this long without progress (90s, 30m, 2h).")
    ] = "30m",
    nats_url: NatsUrlOption = None,
) -> None:
    """Jobs in flight with each dataset's step, or one job's detail; STUCK flags."""
    from archiver.durations import parse_duration
    from archiver.jobstatus import status_command

    try:
        threshold = parse_duration(stuck_after)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--stuck-after") from None
    _operate(
        lambda url, console: status_command(
            url, job, show_all=show_all, stuck_after=threshold, console=console
        ),
        nats_url,
    )


if __name__ == "__main__":
    app()
