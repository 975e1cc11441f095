"""TLS through uvicorn's certificate flags: the server speaks HTTPS with the given certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from embedded_service.api.embedded import EmbeddedServer


def test_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl here to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with EmbeddedServer("memory://", probes=False, write_local=False, grace_s=0, ssl_certfile=cert, ssl_keyfile=key) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        headers = {"Authorization": f"Bearer {srv.token}"}
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=srv.url, headers=headers, verify=trusted, timeout=10) as https:
            assert https.get("/v1/health").json()["status"] == "ok"
            assert https.get("/v1/snapshot").json()["queues"][0]["config"]["name"] == "default"
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.url.replace("https://", "http://") + "/v1/health", timeout=5)  # no plain HTTP beside it
