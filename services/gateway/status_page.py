"""The status page: server-rendered HTML for operators (Jinja2 templates in `templates/`).

`/status` lists the jobs in flight and the recent ones, `/status/jobs/{id}` shows
a job's datasets and offers Cancel and Retry, `/status/dead-letters` lists the
dead letters with their reasons. Pages reload themselves every few seconds
(`<meta http-equiv="refresh">`); there is no JavaScript.

Operators log in at `/status/login` with their SciCat username and password (the
gateway exchanges them for a SciCat token at SciCat's login) or a SciCat token;
a SciCat user in none of the operator groups gets a 403 page. The session is a
signed cookie (`status_sessions`). A POST is taken only from the page's own
origin (Origin header; the cookie is SameSite=Strict too). Texts shown from job
records and dead letters go through `runtime.redaction`: no secret or presigned
URL reaches a page.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import SecretStr

from contracts.events import JobId
from contracts.job_views import CancelAnswer, JobSummary, RetryAnswer, human_size
from contracts.scicat import FINAL_JOB_STATUS_CODES
from runtime.redaction import redact_text
from services.gateway.bootstrap import Gateway
from services.gateway.dependencies import GatewayParts
from services.gateway.errors import GatewayError, NotAuthenticated
from services.gateway.job_reading import JobFilter, list_jobs, read_job
from services.gateway.people import Person, person_of
from services.gateway.status_sessions import COOKIE, StatusLogin

REFRESH_S = 5
"""How often a page reloads itself."""
RECENT_JOBS = 50
"""Finished jobs listed below the ones in flight."""

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def ago(then: datetime | None, now: datetime) -> str:
    """`then` as a person reads it: "12s ago", "3m ago", "2h ago", "4d ago"."""
    if then is None:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


TEMPLATES.env.filters["redact"] = lambda text: redact_text(str(text)) if text else ""
TEMPLATES.env.filters["size"] = human_size
TEMPLATES.env.globals["ago"] = ago


def cancellable(job: JobSummary) -> bool:
    """Not finished (and nobody asked to cancel it yet)."""
    return job.status not in FINAL_JOB_STATUS_CODES and job.cancel_requested_at is None


def retryable(job: JobSummary) -> bool:
    """Finished with failed datasets."""
    return job.status in FINAL_JOB_STATUS_CODES and job.datasets_failed > 0


Steer = Callable[[Gateway, Person, str], Awaitable[Any]]


@dataclass(frozen=True)
class JobSteering:
    """What the job page's Cancel and Retry buttons call (`job_actions.cancel_job` and
    `retry_job`, the functions behind `POST /archiver/jobs/{id}/cancel` and `/retry`)."""

    cancel: Callable[[Gateway, Person, str], Awaitable[CancelAnswer]]
    retry: Callable[[Gateway, Person, str], Awaitable[RetryAnswer]]


def same_origin(request: Request) -> bool:
    """The request came from a page of this gateway (a browser's Origin header says so)."""
    origin = request.headers.get("origin")
    return origin is not None and origin == f"{request.url.scheme}://{request.url.netloc}"


def build_status_router(steering: JobSteering) -> APIRouter:
    router = APIRouter(prefix="/status", include_in_schema=False)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        gateway: Gateway = request.app.state.gateway
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {"now": gateway.clock(), "refresh_s": REFRESH_S, **context},
            status_code=status_code,
        )

    def refused(request: Request, message: str, status_code: int = 403) -> HTMLResponse:
        return page(request, "refused.html", status_code, message=message, operator=None)

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse(request.url_for("status_login"), status_code=303)

    def operator_of(request: Request, gateway: Gateway) -> Person | None:
        """The operator logged in to the page (None: nobody, or the session ended)."""
        login = gateway.status_sessions.operator(request.cookies.get(COOKIE), gateway.clock())
        return None if login is None else Person(login.username, login.groups, operator=True)

    @router.get("", name="status_jobs")
    async def jobs_page(request: Request, gateway: GatewayParts) -> Response:
        operator = operator_of(request, gateway)
        if operator is None:
            return to_login(request)
        now = gateway.clock()
        jobs = (
            await list_jobs(gateway.intake, operator, JobFilter(), now, gateway.stuck_after)
        ).jobs
        in_flight = [j for j in jobs if j.status not in FINAL_JOB_STATUS_CODES]
        recent = [j for j in jobs if j.status in FINAL_JOB_STATUS_CODES][:RECENT_JOBS]
        return page(request, "jobs.html", operator=operator, in_flight=in_flight, recent=recent)

    async def job_answer(
        request: Request, gateway: Gateway, operator: Person, job_id: str, note: str | None
    ) -> Response:
        """The job's page (with `note`, what a button just did); reloads as a GET of it."""
        try:
            job = await read_job(
                gateway.intake, operator, job_id, gateway.clock(), gateway.stuck_after
            )
        except GatewayError as exc:
            return page(
                request,
                "refused.html",
                exc.status_code,
                heading="Not found" if exc.status_code == 404 else "Not available",
                message=exc.detail,
                operator=operator,
            )
        return page(
            request,
            "job.html",
            operator=operator,
            job=job,
            note=note,
            refresh_url=request.url_for("status_job", job_id=job_id),
            cancellable=cancellable(job),
            retryable=retryable(job),
        )

    @router.get("/jobs/{job_id}", name="status_job")
    async def job_page(request: Request, job_id: str, gateway: GatewayParts) -> Response:
        operator = operator_of(request, gateway)
        if operator is None:
            return to_login(request)
        return await job_answer(request, gateway, operator, job_id, None)

    async def steer(request: Request, job_id: JobId, gateway: Gateway, action: Steer) -> Response:
        """Run a button's action and show the job's page with what it answered (not a redirect
        carrying the sentence in its URL: a link could then show anyone's sentence)."""
        if not same_origin(request):
            return refused(request, "This form must be sent from the status page itself.")
        operator = operator_of(request, gateway)
        if operator is None:
            return to_login(request)
        try:
            answer = await action(gateway, operator, job_id)
            note = answer.message
        except GatewayError as exc:
            note = exc.detail
        return await job_answer(request, gateway, operator, job_id, note)

    @router.post("/jobs/{job_id}/cancel", name="status_cancel")
    async def cancel_form(request: Request, job_id: JobId, gateway: GatewayParts) -> Response:
        return await steer(request, job_id, gateway, steering.cancel)

    @router.post("/jobs/{job_id}/retry", name="status_retry")
    async def retry_form(request: Request, job_id: JobId, gateway: GatewayParts) -> Response:
        return await steer(request, job_id, gateway, steering.retry)

    @router.get("/dead-letters", name="status_dead_letters")
    async def dead_letters_page(request: Request, gateway: GatewayParts) -> Response:
        operator = operator_of(request, gateway)
        if operator is None:
            return to_login(request)
        letters = list(reversed(await gateway.dead_letters()))
        return page(request, "dead_letters.html", operator=operator, letters=letters)

    @router.get("/login", name="status_login")
    async def login_page(request: Request) -> Response:
        return page(request, "login.html", operator=None, message=None)

    @router.post("/login")
    async def log_in(
        request: Request,
        gateway: GatewayParts,
        username: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[SecretStr, Form(max_length=1000)] = SecretStr(""),
        token: Annotated[SecretStr, Form(max_length=10_000)] = SecretStr(""),
    ) -> Response:
        """Username and password (exchanged at SciCat's login) or a SciCat token."""
        if not same_origin(request):
            return refused(request, "Log in from the status page's own login form.")
        try:
            if token.get_secret_value().strip():
                scicat_token = token.get_secret_value().strip()
            elif username.strip() and password.get_secret_value():
                scicat_token = await gateway.catalog.log_in(username.strip(), password)
            else:
                msg = "Give your SciCat username and password, or paste a SciCat token"
                raise NotAuthenticated(msg)
            person = await person_of(scicat_token, gateway)
        except GatewayError as exc:
            return page(request, "login.html", exc.status_code, operator=None, message=exc.detail)
        if not person.operator:
            return refused(
                request,
                f"You are logged in to SciCat as {person.username}, who is not an archiver"
                " operator: only members of the operator groups may see the status page."
                " Ask the facility's archiver operators to add you.",
            )
        response = RedirectResponse(request.url_for("status_jobs"), status_code=303)
        response.set_cookie(
            COOKIE,
            gateway.status_sessions.issue(
                StatusLogin(person.username, person.groups), gateway.clock()
            ),
            max_age=int(gateway.status_sessions.ttl.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout", name="status_logout")
    async def log_out(request: Request) -> Response:
        if not same_origin(request):
            return refused(request, "Log out from the status page itself.")
        response = to_login(request)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return router
