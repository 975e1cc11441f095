"""Jobs: submit, list, read, cancel, and the log tail (optionally followed as it grows).

A `client` token sees and cancels only the jobs it submitted; the job's owner
is always the submitting token's name. A client submits registered tasks, and
commands only where the allow-list has them (see `commands`). Env values are
never answered (see `visibility`); every cancel, by the owner too, is audited.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from ..errors import UnknownJob
from ..jobs.logs import read_index
from ..jobs.runner import LOG_PAGE_MAX_BYTES, MAX_IDEMPOTENCY_KEY
from ..model import CommandSubmit, Job, JobKind, JobLogPage, JobPage, JobState, Role, TaskSubmit
from ..service import SlotService
from .auth import Principal
from .deps import ItemId, Need
from .problems import ApiProblem, problems
from .state import ApiState
from .visibility import masked

FOLLOW_POLL_S = 0.2
CANCEL_ANSWER_S = 1.0  # a cancel answers within this: the final state of a slow-to-stop job follows as an event
READ_CHUNK = 64 * 1024


def only_own(who: Principal) -> bool:
    return who.role is Role.client


def tail_lines(path: Path, tail: int) -> tuple[bytes, int]:
    """The last `tail` lines of a file and the offset where new data will start."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b"", 0
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-tail:]) if tail else b"", len(data)


def add_job_routes(r: APIRouter, st: ApiState, need: Need) -> None:
    svc = st.service
    Viewer = Annotated[Principal, Depends(need(Role.viewer))]
    Client = Annotated[Principal, Depends(need(Role.client))]

    async def visible_job(job_id: str, who: Principal) -> Job:
        job = await svc.get_job(job_id)
        if only_own(who) and job.owner != who.name:
            raise UnknownJob(job_id)  # a client does not learn that others' jobs exist
        return job

    @r.post(
        "/v1/jobs",
        response_model=Job,
        status_code=201,
        responses={
            200: {"model": Job, "description": "The job an earlier submit with this Idempotency-Key made"},
            **problems(401, 403, 404, 409, 422, 503),
        },
        tags=["jobs"],
    )
    async def submit(
        body: TaskSubmit | CommandSubmit,
        who: Client,
        request: Request,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY,
                pattern=r"^[\x21-\x7e]+$",
                description="Repeat a submit safely: the same key from the same token within a day returns the "
                "first job (200) instead of queuing another (201).",
            ),
        ] = None,
    ) -> Job:
        """Submit a registered task or a command; answered once the store has committed it."""
        if len(sent := request.headers.getlist("idempotency-key")) > 1:  # which one the caller meant is unknown
            raise ApiProblem(422, "Invalid request", f"send one Idempotency-Key header, not {len(sent)}", code="invalid")
        st.check_admitting()
        if isinstance(body, CommandSubmit):
            st.settings.commands.check(who, body)
        job = await submit_spec(svc, body, who.name, idempotency_key)
        if job.replayed:
            response.status_code = 200
        return masked(job)

    @r.get("/v1/jobs", response_model=JobPage, responses=problems(401, 403, 422), tags=["jobs"])
    async def list_jobs(
        who: Viewer,
        state: JobState | None = None,
        queue: Annotated[str | None, Query(max_length=64)] = None,
        owner: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> JobPage:
        """Jobs newest first, filtered; follow `next_cursor` for more. Clients see their own only."""
        if only_own(who):
            owner = who.name
        try:
            page = await svc.list_jobs(state=state, queue=queue, owner=owner, limit=limit, cursor=cursor)
            return page.model_copy(update={"jobs": [masked(job) for job in page.jobs]})
        except ValueError as exc:  # a cursor this server never gave out
            raise ApiProblem(422, "Invalid request", str(exc), code="invalid") from None

    @r.get("/v1/jobs/{job_id}", response_model=Job, responses=problems(401, 403, 404, 422), tags=["jobs"])
    async def get_job(job_id: ItemId, who: Viewer) -> Job:
        """One job with its state, outcome and live figures (env values masked)."""
        return masked(await visible_job(job_id, who))

    @r.post(
        "/v1/jobs/{job_id}/cancel",
        response_model=Job,
        responses={
            202: {"model": Job, "description": "Still stopping (state `cancelling`): the final state comes as a job event"},
            **problems(401, 403, 404, 409, 422),
        },
        tags=["jobs"],
    )
    async def cancel_job(job_id: ItemId, who: Client, response: Response) -> Job:
        """Cancel a queued job, or stop a running one (its process group gets SIGTERM, then SIGKILL after the
        kill grace). Answers within about a second: 200 with the final state, or 202 with `cancelling`."""
        before = await visible_job(job_id, who)
        job = await svc.cancel_job(job_id, wait_s=CANCEL_ANSWER_S)
        if job.state is JobState.cancelling:
            response.status_code = 202
        await st.audit(who, "job.cancel", job_id, before.state.value, job.state.value, owner=job.owner)
        return masked(job)

    @r.post(
        "/v1/jobs/{job_id}/retry",
        response_model=Job,
        status_code=201,
        responses=problems(401, 403, 404, 409, 422, 503),
        tags=["jobs"],
    )
    async def retry_job(job_id: ItemId, who: Client) -> Job:
        """Submit a NEW job with the spec of a finished one (same task or argv, env, cwd, queue, GPUs, attempts);
        409 while the original has not finished. The new job is owned by the caller; audited as `job.retry`."""
        st.check_admitting()
        old = await visible_job(job_id, who)
        if not old.state.finished and old.state is not JobState.interrupted:
            raise ApiProblem(409, "Job not finished", f"job {job_id} is {old.state.value}", code="job_not_finished")
        spec = spec_of(old)
        if isinstance(spec, CommandSubmit):  # the allow-list may have changed since the first submit
            st.settings.commands.check(who, spec)
        job = await submit_spec(svc, spec, who.name)
        await st.audit(who, "job.retry", job_id, {"job": job_id}, {"job": job.id})
        return masked(job)

    async def follow(job_id: str, tail: int, holder: str = "", after: int | None = None) -> AsyncIterator[bytes]:
        offset: int | None = None  # None until the log file exists (a queued job has none yet)
        revision = st.broker.token_revision(holder)
        while st.broker.token_revision(holder) == revision:  # the token revoked or replaced: the stream ends
            finished = (await svc.get_job(job_id)).state.finished  # read before the file: no last line is lost
            path = svc.job_log_path(job_id)
            if path is not None and offset is None and after is not None:  # from a log position (after a page)
                offset = max(0, after - (await asyncio.to_thread(read_index, path)).starts[-1])
                continue
            if path is not None and offset is None:
                head, offset = await asyncio.to_thread(tail_lines, path, tail)
                if head:
                    yield head
                continue
            if path is not None and offset is not None:
                chunk = await asyncio.to_thread(read_from, path, offset)
                if chunk:
                    offset += len(chunk)
                    yield chunk
                    continue
            if finished or st.draining:
                return
            await asyncio.sleep(FOLLOW_POLL_S)

    @r.get(
        "/v1/jobs/{job_id}/log",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Log tail"}, **problems(401, 403, 404, 422)},
        tags=["jobs"],
    )
    async def job_log(
        job_id: ItemId,
        who: Viewer,
        tail: Annotated[int, Query(ge=0, le=100_000)] = 200,
        follow_: Annotated[bool, Query(alias="follow", description="Keep streaming new lines until the job ends.")] = False,
        after: Annotated[
            int | None,
            Query(ge=0, le=2**62, description="With `follow`: start at this log position (a page's `end`), no tail."),
        ] = None,
    ) -> Response:
        """The last `tail` lines of the job's output; with `follow`, new lines as they are written."""
        await visible_job(job_id, who)
        if follow_:
            stream = follow(job_id, tail, who.name, after)
            return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
        return PlainTextResponse(await svc.job_log(job_id, tail=tail))

    @r.get(
        "/v1/jobs/{job_id}/log/page",
        response_model=JobLogPage,
        responses=problems(401, 403, 404, 422),
        tags=["jobs"],
    )
    async def job_log_page(
        job_id: ItemId,
        who: Viewer,
        before: Annotated[
            int | None, Query(ge=0, le=2**62, description="Log position the page ends at (default: the end).")
        ] = None,
        max_bytes: Annotated[int, Query(ge=1, le=LOG_PAGE_MAX_BYTES)] = 256 * 1024,
    ) -> JobLogPage:
        """Whole lines of the job's output ending at log position `before`, at most `max_bytes`, in parts that
        say where each attempt began (from the service's own index: nothing the job prints can fake one). Page
        back with `before=start` until `start == first` (the first line still kept), whatever the log's size."""
        await visible_job(job_id, who)
        return await svc.job_log_page(job_id, before, max_bytes)


def spec_of(job: Job) -> TaskSubmit | CommandSubmit:
    """The submit that repeats `job` (a retry)."""
    common: dict[str, Any] = {
        "gpus": job.gpus,
        "gpu_mem_mib": job.gpu_mem_mib,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "max_runtime_s": job.max_runtime_s,
    }
    if job.kind is JobKind.task:
        return TaskSubmit(task=job.task or "", args=job.args, kwargs=job.kwargs, **common)
    return CommandSubmit(argv=list(job.argv or []), queue=job.queue, env=job.env or {}, cwd=job.cwd, **common)


async def submit_spec(
    svc: SlotService, body: TaskSubmit | CommandSubmit, owner: str | None, idempotency_key: str | None = None
) -> Job:
    """Queue the job a submit body describes, for `owner` (the one place a body becomes a job)."""
    common: dict[str, Any] = {
        "owner": owner,
        "priority": body.priority,
        "max_attempts": body.max_attempts,
        "max_runtime_s": body.max_runtime_s,
        "gpus": body.gpus,
        "gpu_mem_mib": body.gpu_mem_mib,
        "idempotency_key": idempotency_key,
    }
    if isinstance(body, TaskSubmit):
        return await svc.submit(body.task, args=body.args, kwargs=body.kwargs, **common)
    return await svc.submit_command(body.argv, queue=body.queue, env=body.env, cwd=body.cwd, **common)


def read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(READ_CHUNK)
    except FileNotFoundError:
        return b""
