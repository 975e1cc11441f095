"""One table (`error_table.ERRORS`) decides how an error crosses HTTP: the server's status and code,
the error type a client raises again, and the CLI's exit code. A changed row changes all three."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from embedded_service import error_table
from embedded_service.api.problems import problem_for
from embedded_service.cli import EXIT_AUTH, EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_USAGE, exit_code, main
from embedded_service.client import Client
from embedded_service.client.errors import error_from
from embedded_service.errors import QueueBusy, SlotDeckError, StoreFault
from tests.api.conftest import Running

EXIT_FOR = {404: EXIT_NOT_FOUND, 403: EXIT_AUTH, 409: EXIT_CONFLICT, 410: EXIT_CONFLICT, 422: EXIT_USAGE, 503: EXIT_CONFLICT}


def sample(row: error_table.ErrorRow) -> SlotDeckError:
    """An instance of the row's error type, built the way a client rebuilds it (or from its own arguments)."""
    if row.build is not None:
        return row.build({"status": row.status, "title": row.title, "detail": "d"}, 1.0)
    args = {"StoreFault": ("disk full", "x"), "IdempotencyKeyReused": ("k", "j1")}.get(row.error.__name__, ("x",))
    return row.error(*args)


@pytest.mark.parametrize("row", error_table.ERRORS, ids=lambda row: row.code)
def test_each_row_is_what_server_client_and_cli_use(row: error_table.ErrorRow) -> None:
    exc = sample(row)
    answer = problem_for(exc)
    assert (answer.status_code, httpx.Response(200, content=answer.body).json()["code"]) == (row.status, row.code)
    back = error_from(httpx.Response(answer.status_code, content=answer.body, headers=dict(answer.headers)))
    if row.build is not None:
        assert type(back) is type(exc)
    assert exit_code(back) == EXIT_FOR[row.status]  # what the CLI meets from a server
    if row.error is not StoreFault:  # raised in the CLI's own process (serve) it means "this store is unusable"
        assert exit_code(exc) == EXIT_FOR[row.status]


def test_one_changed_row_changes_server_client_and_cli(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """QueueBusy moved from 409 `queue_busy` to 422 `queue_in_use`: the real server answers that, the client
    still raises QueueBusy (it follows the new code), and the CLI exits as for any 422 (usage), not 6."""
    rows = tuple(
        dataclasses.replace(row, status=422, code="queue_in_use") if row.error is QueueBusy else row
        for row in error_table.ERRORS
    )
    monkeypatch.setattr(error_table, "ERRORS", rows)
    with running.http("admin") as http:
        assert http.put("/v1/queues/busy", json={"limit": 1}).status_code in (200, 201)
    with running.http("client") as http:
        assert http.post("/v1/queues/busy/leases", json={"wait_s": 0}).status_code == 201
    with running.http("admin") as http:
        answer = http.delete("/v1/queues/busy")
    assert (answer.status_code, answer.json()["code"]) == (422, "queue_in_use")
    with Client(running.url, token=running.tokens["admin"]) as client, pytest.raises(QueueBusy):
        client.delete_queue("busy")
    assert main(["queue", "delete", "busy", "--url", running.url, "--token", running.tokens["admin"]]) == EXIT_USAGE
