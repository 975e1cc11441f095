"""schemathesis against the served OpenAPI schema: no 5xx and no answer outside its documented
schema, with and without a valid token. Streaming routes and command submission are left out
(they never end on their own, or would run generated programs); they have their own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from embedded_service.api.auth import create_token
from embedded_service.api.embedded import EmbeddedServer
from embedded_service.model import Role

CHECKS = [
    schemathesis.checks.not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[EmbeddedServer, str]]:
    server = EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0, max_poll_s=0.2)
    server.start()
    token = server.call(create_token(server.service.store, "fuzzer", Role.admin))
    try:
        yield server, token
    finally:
        server.stop()


def _operations(server: EmbeddedServer) -> list:  # type: ignore[type-arg]
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    schema = (
        schema.exclude(path="/v1/events")
        .exclude(path="/v1/jobs/{job_id}/log")
        .exclude(method="POST", path="/v1/jobs")
        .exclude(method="DELETE", path="/v1/tokens/{name}")  # would lock the fuzzer out
    )
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(server: EmbeddedServer, headers: dict[str, str], examples: int) -> None:
    operations = _operations(server)
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc


def test_api_conforms_to_its_schema_with_a_token(fuzz_server: tuple[EmbeddedServer, str]) -> None:
    server, token = fuzz_server
    _fuzz(server, {"Authorization": f"Bearer {token}"}, examples=40)


def test_api_conforms_to_its_schema_without_a_token(fuzz_server: tuple[EmbeddedServer, str]) -> None:
    _fuzz(fuzz_server[0], {}, examples=10)
