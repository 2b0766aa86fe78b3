"""`archiver`: one command for services, the dev stack and operator tools."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from archiver.running import Service, run_service

if TYPE_CHECKING:
    from rich.console import Console

    from archiver.job_api import JobApi
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


# Options shared by the client commands (ingest, retrieve, jobs, job, cancel, retry).
StackOption = Annotated[
    Path | None,
    typer.Option(
        "--stack",
        help="A dev stack: its state dir (var/dev) or its stack.json; URLs and the ingestor user.",
    ),
]
ScicatUrl = Annotated[
    str | None,
    typer.Option(
        envvar="ARCHIVER_SCICAT_URL", help="SciCat API base, e.g. https://scicat.example.org/api."
    ),
]
GatewayUrl = Annotated[
    str | None,
    typer.Option(
        envvar="ARCHIVER_GATEWAY_URL",
        help="Archiver API base, e.g. https://host/archiver/api/v1.",
    ),
]
ScicatToken = Annotated[
    str | None,
    typer.Option(
        envvar="SCICAT_TOKEN",
        help="Your SciCat token, copied from SciCat's web UI (or the env var SCICAT_TOKEN).",
        show_default=False,
    ),
]
ScicatUser = Annotated[
    str | None,
    typer.Option(
        envvar="ARCHIVER_SCICAT_USERNAME", help="SciCat user (without --token); asks the password."
    ),
]
ScicatPassword = Annotated[
    str | None,
    typer.Option(
        envvar="ARCHIVER_SCICAT_PASSWORD",
        help="SciCat password (better: the prompt, or the env var).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _ask_password() -> "Callable[[str], str] | None":
    """A prompt that never echoes, when someone is at the terminal to answer it."""
    import sys

    if not sys.stdin.isatty():
        return None
    return lambda user: typer.prompt(f"SciCat password for {user}", hide_input=True)


@app.command()
def ingest(
    folder: Annotated[Path, typer.Argument(help="The dataset's folder (every file below it).")],
    owner_group: Annotated[str, typer.Option(help="SciCat ownerGroup of the new dataset.")],
    stack: StackOption = None,
    scicat_url: ScicatUrl = None,
    gateway_url: GatewayUrl = None,
    token: ScicatToken = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
    archive: Annotated[
        bool,
        typer.Option(
            "--archive", help="Ask for the archive job when finalizing; print its id once created."
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="With --archive: follow the job to its end with a progress bar. Exit 0 archived,"
            " 3 failed, 124 timed out.",
        ),
    ] = False,
    timeout: Annotated[
        str, typer.Option(help="--wait gives up after this long: seconds, or 90s, 30m, 2h.")
    ] = "24h",
    resume: Annotated[
        str | None,
        typer.Option(
            help="Upload into this dataset (left behind by an interrupted ingest of FOLDER)."
        ),
    ] = None,
    chunk_size: Annotated[
        str, typer.Option(help="Files above this go multipart, in parts this big.")
    ] = "128MiB",
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Concurrent PUTs.")] = 4,
    name: Annotated[str | None, typer.Option(help="datasetName (default: the folder's).")] = None,
    contact_email: Annotated[str | None, typer.Option(help="Default: your SciCat email.")] = None,
) -> None:
    """Register FOLDER as a raw dataset in SciCat, upload it, finalize it; print its pid.

    Log in with --token (SCICAT_TOKEN), or --username and the password prompt: checked
    before hashing starts. With --archive the archive job's id follows the pid on stdout.
    Ctrl-C aborts the upload (exit 130) and names the SciCat dataset it leaves.
    """
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
            token=token,
            ask_password=_ask_password(),
            archive=archive,
            wait=wait,
            timeout=timeout,
            resume=resume,
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
    stack: StackOption = None,
    scicat_url: ScicatUrl = None,
    gateway_url: GatewayUrl = None,
    token: ScicatToken = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
    owner_group: Annotated[
        str | None, typer.Option(help="The job's ownerGroup (default: the dataset's).")
    ] = None,
    _job_user: Annotated[
        str | None, typer.Option("--job-user", envvar="ARCHIVER_JOB_USER", hidden=True)
    ] = None,
    _job_password: Annotated[
        str | None, typer.Option("--job-password", envvar="ARCHIVER_JOB_PASSWORD", hidden=True)
    ] = None,
    timeout: Annotated[
        str, typer.Option(help="Give up following the job after this long (90s, 30m, 2h).")
    ] = "2h",
    poll: Annotated[str, typer.Option(help="How often to ask SciCat about the job.")] = "2s",
) -> None:
    """Create a SciCat retrieve job for PID, download, unpack and verify every file into --to.

    Per-dataset steps come from the gateway's job API, read with your SciCat token.
    """
    # --job-user/--job-password (the gateway's job credentials) are no longer needed: ignored.
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
            token=token,
            ask_password=_ask_password(),
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


OperatorStack = Annotated[
    Path | None,
    typer.Option(
        "--stack",
        help="A dev stack (state dir or stack.json): its NATS and operator login."
        " Default: var/dev/stack.json if present.",
    ),
]


def _operate(
    run: "Callable[[NatsSettings, Console], int]",
    nats_url: str | None,
    stack: Path | None = None,
) -> None:
    """Run an operator command as the operator user on the resolved NATS; exit with its code."""
    from rich.console import Console

    from archiver.operator_bus import BusUnreachableError, OperatorSettings, resolve_operator_bus
    from runtime.redaction import redact_text

    console = Console()
    try:
        bus = resolve_operator_bus(nats_url, OperatorSettings(), explicit_stack=stack)
        code = run(bus, console)
    except BusUnreachableError as exc:
        console.print(redact_text(str(exc)), markup=False, highlight=False)
        code = 1
    raise typer.Exit(code)


@dlq_app.command("list")
def dlq_list(
    as_json: JsonOption = False, nats_url: NatsUrlOption = None, stack: OperatorStack = None
) -> None:
    """List dead letters (and the server's max-deliveries advisories), oldest first."""
    from archiver import deadletters

    _operate(
        lambda url, console: deadletters.list_command(url, console, as_json=as_json),
        nats_url,
        stack,
    )


@dlq_app.command("show")
def dlq_show(
    n: Annotated[int, typer.Argument(help="The dead letter's number (N in `dlq list`).")],
    as_json: JsonOption = False,
    nats_url: NatsUrlOption = None,
    stack: OperatorStack = None,
) -> None:
    """Show dead letter N and the original message it points at."""
    from archiver import deadletters

    _operate(
        lambda url, console: deadletters.show_command(url, n, console, as_json=as_json),
        nats_url,
        stack,
    )


@dlq_app.command("retry")
def dlq_retry(
    n: Annotated[int | None, typer.Argument(help="The dead letter's number.")] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    nats_url: NatsUrlOption = None,
    stack: OperatorStack = None,
) -> None:
    """Re-publish the original of dead letter N (or of all) to its subject, then remove it."""
    from archiver import deadletters

    if (n is None) == (not retry_all):
        raise typer.BadParameter("give either N or --all")
    _operate(lambda url, console: deadletters.retry_command(url, n, console), nats_url, stack)


@dlq_app.command("drop")
def dlq_drop(
    n: Annotated[int, typer.Argument(help="The dead letter's number.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    nats_url: NatsUrlOption = None,
    stack: OperatorStack = None,
) -> None:
    """Remove dead letter N without retrying it."""
    from archiver import deadletters

    def confirm(question: str) -> bool:
        return yes or typer.confirm(question)

    _operate(
        lambda url, console: deadletters.drop_command(url, n, console, confirm=confirm),
        nats_url,
        stack,
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
    stack: OperatorStack = None,
) -> None:
    """Re-publish selected events from the ARCHIVER log (handlers are idempotent).

    Each original event is selected once; earlier replays and dead-letter retries of it
    are not (they carry the original's sequence in `Archiver-Copy-Of`).
    """
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
        stack,
    )


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="One job's detail.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Finished jobs too.")] = False,
    stuck_after: Annotated[
        str, typer.Option(help="Flag STUCK after this long without progress (90s, 30m, 2h).")
    ] = "30m",
    as_json: JsonOption = False,
    nats_url: NatsUrlOption = None,
    stack: OperatorStack = None,
) -> None:
    """Jobs in flight with each dataset's step, or one job's detail; STUCK flags (operators).

    Reads the job records on the bus (NATS, operator login). Without bus access use
    `archiver jobs` / `archiver job ID`, which ask the gateway with your SciCat token.
    """
    from archiver.durations import parse_duration
    from archiver.jobstatus import status_command

    try:
        threshold = parse_duration(stuck_after)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--stuck-after") from None
    _operate(
        lambda url, console: status_command(
            url, job, show_all=show_all, stuck_after=threshold, console=console, as_json=as_json
        ),
        nats_url,
        stack,
    )


# --- jobs through the gateway, with the person's SciCat token ------------------------


def _job_command(
    action: "Callable[[JobApi, Console], int]",
    *,
    stack: Path | None,
    scicat_url: str | None,
    gateway_url: str | None,
    token: str | None,
    username: str | None,
    password: str | None,
) -> None:
    from archiver.job_commands import LoginOptions, run_job_command

    options = LoginOptions(stack, scicat_url, gateway_url, username, password, token)
    raise typer.Exit(run_job_command(options, action, ask_password=_ask_password()))


@app.command()
def jobs(
    state: Annotated[
        str | None,
        typer.Option(help="Only jobs in this state (jobSubmitted, inProgress, finished..., ...)."),
    ] = None,
    job_type: Annotated[
        str | None, typer.Option("--type", help="Only archive or retrieve jobs.")
    ] = None,
    owner_group: Annotated[str | None, typer.Option(help="Only jobs of this group.")] = None,
    as_json: JsonOption = False,
    stack: StackOption = None,
    gateway_url: GatewayUrl = None,
    token: ScicatToken = None,
    scicat_url: ScicatUrl = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
) -> None:
    """Your groups' archive and retrieve jobs (operators: everyone's), newest first."""
    from archiver.job_commands import list_jobs

    _job_command(
        list_jobs(state=state, job_type=job_type, owner_group=owner_group, as_json=as_json),
        stack=stack,
        scicat_url=scicat_url,
        gateway_url=gateway_url,
        token=token,
        username=username,
        password=password,
    )


JobIdArgument = Annotated[str, typer.Argument(help="The SciCat job id.")]


@app.command()
def job(
    job_id: JobIdArgument,
    as_json: JsonOption = False,
    stack: StackOption = None,
    gateway_url: GatewayUrl = None,
    token: ScicatToken = None,
    scicat_url: ScicatUrl = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
) -> None:
    """One job: its status, and each dataset's phase, percent and datablocks."""
    from archiver.job_commands import show_job

    _job_command(
        show_job(job_id, as_json=as_json),
        stack=stack,
        scicat_url=scicat_url,
        gateway_url=gateway_url,
        token=token,
        username=username,
        password=password,
    )


@app.command()
def cancel(
    job_id: JobIdArgument,
    stack: StackOption = None,
    gateway_url: GatewayUrl = None,
    token: ScicatToken = None,
    scicat_url: ScicatUrl = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
) -> None:
    """Cancel a running job: its work stops at the next safe point (exit 1 if it has ended)."""
    from archiver.job_commands import cancel_job

    _job_command(
        cancel_job(job_id),
        stack=stack,
        scicat_url=scicat_url,
        gateway_url=gateway_url,
        token=token,
        username=username,
        password=password,
    )


@app.command()
def retry(
    job_id: JobIdArgument,
    timeout: Annotated[
        str, typer.Option(help="Wait this long for the new job: seconds, or 90s, 5m.")
    ] = "60",
    stack: StackOption = None,
    gateway_url: GatewayUrl = None,
    token: ScicatToken = None,
    scicat_url: ScicatUrl = None,
    username: ScicatUser = None,
    password: ScicatPassword = None,
) -> None:
    """Retry the datasets that failed in a finished job: prints the new SciCat job's id."""
    from archiver.ingest_display import parse_timeout
    from archiver.job_commands import retry_job

    try:
        timeout_s = parse_timeout(timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timeout") from None
    _job_command(
        retry_job(job_id, timeout_s=timeout_s),
        stack=stack,
        scicat_url=scicat_url,
        gateway_url=gateway_url,
        token=token,
        username=username,
        password=password,
    )


if __name__ == "__main__":
    app()
