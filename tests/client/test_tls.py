"""TLS: verified by default, a CA bundle trusts a private CA, ``verify_tls=False`` trusts all."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from tests.client.test_hostile_servers import FAST, Recorder, image_json, serve, token_credentials
from transfer.cloud.sessions import CloudSession
from transfer.errors import ConfigError, TlsVerificationError


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command line tool)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_is_verified_unless_told_otherwise(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    recorder = Recorder()

    async def show(request: web.Request) -> web.StreamResponse:
        return web.json_response(image_json(request.match_info["id"]))

    routes = [web.get("/v2/images/{id}", show)]
    async with serve(routes, recorder, ssl_context=server_side) as endpoint:
        untrusted = token_credentials(endpoint)
        async with CloudSession(untrusted, settings=FAST) as cloud:
            client = await cloud.image_client("KR1")
            with pytest.raises(TlsVerificationError, match="not trusted") as caught:
                await client.get_image("abc")
        assert caught.value.fatal and not caught.value.retryable
        assert recorder.requests == []  # the token never left

        trusted = replace(untrusted, ca_bundle=str(cert))
        async with CloudSession(trusted, settings=FAST) as cloud:
            client = await cloud.image_client("KR1")
            assert (await client.get_image("abc")).id == "abc"

        insecure = replace(untrusted, verify_tls=False)
        async with CloudSession(insecure, settings=FAST) as cloud:
            client = await cloud.image_client("KR1")
            assert (await client.get_image("def")).id == "def"

    with pytest.raises(ConfigError, match="cannot load the CA bundle"):
        CloudSession(replace(untrusted, ca_bundle=str(tmp_path / "missing.pem")))
