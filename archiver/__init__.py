"""The `archiver` command: run a service, the dev stack, and the operator tools."""
