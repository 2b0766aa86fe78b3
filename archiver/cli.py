"""`archiver`: one command for services, the dev stack and operator tools."""

from pathlib import Path
from typing import Annotated

import typer

from archiver.running import Service, run_service

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Archive scientific datasets to long-term storage.",
)


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


if __name__ == "__main__":
    app()
