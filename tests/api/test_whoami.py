"""`GET /v1/whoami`: every valid token learns its own name and role; no or a forged token gets 401."""

from __future__ import annotations

from embedded_service.model import Role
from tests.api.conftest import Running


def test_whoami_names_the_token_and_its_role_for_every_role(running: Running) -> None:
    for role in Role:
        with running.http(role.value) as http:
            answer = http.get("/v1/whoami")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"name": role.value, "role": role.value}
    with running.http("client2") as http:
        assert http.get("/v1/whoami").json() == {"name": "client2", "role": "client"}


def test_whoami_refuses_a_missing_or_forged_token(running: Running) -> None:
    with running.http() as anonymous:
        assert anonymous.get("/v1/whoami").status_code == 401
    with running.http(token="sdk_not-a-real-token") as forged:
        answer = forged.get("/v1/whoami")
        assert answer.status_code == 401 and answer.headers["content-type"].startswith("application/problem+json")
