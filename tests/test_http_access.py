"""Who may use `legalsearch serve`: a token required of every request when given (Bearer, or Basic for a
browser), refused to start off loopback without one unless told --insecure, and on loopback only requests whose
Host names this server (DNS rebinding)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from legalsearch.cli import app
from legalsearch.server import allowed_hosts, create_app

from .test_http_api import client, served  # noqa: F401  (the index and client of the API tests)

runner = CliRunner()
TOKEN = "kX9-open-sesame-2099-tok"


@pytest.fixture(scope="module")
def guarded(served) -> TestClient:  # noqa: F811
    return TestClient(create_app(served, token=TOKEN))


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"abogada:{password}".encode()).decode()


def test_a_token_is_required_of_every_request(guarded) -> None:
    for path in ("/health", "/laws", "/laws/BOE-A-2099-77", "/openapi.json", "/docs", "/static/style.css"):
        refused = guarded.get(path)
        assert refused.status_code == 401, path
        assert TOKEN not in refused.text and refused.json()["detail"].startswith("this server needs its token")
    for page in ("/", "/ley/BOE-A-2099-77", "/cambios"):
        refused = guarded.get(page)
        assert refused.status_code == 401 and "Este buscador pide una clave de acceso" in refused.text, page
    assert guarded.post("/search", json={"query": "matrimonio"}).status_code == 401
    assert guarded.get("/health", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert guarded.get("/health", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert guarded.get("/health", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert guarded.get("/health", headers={"Authorization": TOKEN}).status_code == 401
    ok = guarded.post("/search", json={"query": "matrimonio", "k": 1}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["hits"]


def test_browsers_are_asked_for_the_token_as_a_password(guarded) -> None:
    page = guarded.get("/")
    assert page.headers["www-authenticate"].startswith("Basic "), "the browser shows its password prompt"
    assert guarded.get("/laws").headers["www-authenticate"].startswith("Bearer ")
    assert guarded.get("/", headers={"Authorization": _basic(TOKEN)}).status_code == 200
    assert guarded.get("/docs", headers={"Authorization": _basic(TOKEN)}).status_code == 200
    assert guarded.get("/", headers={"Authorization": _basic("not-the-token")}).status_code == 401


def test_the_docs_say_a_token_is_needed(guarded) -> None:
    spec = guarded.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert "Authorization: Bearer TOKEN" in spec["info"]["description"]
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert spec["security"] == [{"token": []}], "Swagger's Authorize button asks for it"


@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("127.0.0.1:8000", True),
        ("localhost:8000", True),
        ("LOCALHOST:8000", True),
        ("[::1]:8000", True),
        ("search.lan", True),  # named with --allowed-host
        ("search.lan:8000", True),
        ("evil.example", False),  # a rebinding page's own name
        ("evil.example:8000", False),
        ("localhost:9000", False),  # another port: another server
        ("127.0.0.1", False),
        ("", False),
    ],
)
def test_on_loopback_only_this_servers_names_are_answered(served, host, answered) -> None:  # noqa: F811
    hosts = allowed_hosts("127.0.0.1", 8000, ["search.lan"])
    response = TestClient(create_app(served, hosts=hosts)).get("/health", headers={"host": host})
    assert (response.status_code == 200) == answered, response.text
    if not answered:
        assert response.status_code == 400 and "Host header" in response.json()["detail"]
        assert "evil" not in response.text


def test_which_hosts_a_server_answers() -> None:
    assert allowed_hosts("127.0.0.1", 80) >= {"localhost", "localhost:80", "127.0.0.1", "[::1]:80"}
    assert allowed_hosts("::1", 8000) == {"localhost:8000", "127.0.0.1:8000", "[::1]:8000"}
    assert allowed_hosts("0.0.0.0", 8000) is None, "off loopback with no name given: the token guards it"
    assert allowed_hosts("192.168.1.5", 8000, ["search.lan"]) == {"search.lan", "search.lan:8000", "192.168.1.5:8000"}


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--host", "0.0.0.0"], {}, "--host 0.0.0.0 opens the index to the network without a token"),
        (["--host", "192.168.1.5", "--port", "9000"], {}, "anyone who can reach port 9000"),
        (["--token", "short"], {}, "--token is too short (5 characters; at least 16)"),
        (["--host", "0.0.0.0"], {"LEGALSEARCH_TOKEN": "tiny"}, "--token is too short (4 characters"),
    ],
)
def test_serve_refuses_to_open_the_index_to_the_network_without_a_token(args, env, said, monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2 and said in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert all(value not in result.stderr for value in env.values()), "the token is never printed"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_with_a_token_from_the_environment(served, tmp_path) -> None:  # noqa: F811
    """The real command: LEGALSEARCH_TOKEN is required of requests; a request for another Host is refused."""
    port = _free_port()
    env = {**os.environ, "LEGALSEARCH_TOKEN": TOKEN}
    command = [sys.executable, "-m", "legalsearch", "serve", "--index", str(served.path), "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{base}/health").status_code == 401
        health = httpx.get(f"{base}/health", headers=auth)
        assert health.status_code == 200 and health.json()["index"] == Path(served.path).name
        rebound = httpx.get(f"{base}/health", headers={**auth, "host": f"attacker.example:{port}"})
        assert rebound.status_code == 400
        assert httpx.get(f"{base}/laws", headers={**auth, "host": f"localhost:{port}"}).status_code == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "token required" in stderr and TOKEN not in stderr


def test_what_a_page_loads_asks_a_browser_for_the_password(guarded) -> None:
    """The CSS, Swagger's files and the schema /docs fetches: a browser that was given the password for a page
    sends it again only when asked with Basic (a Bearer challenge left the page without its CSS)."""
    for path in ("/static/style.css", "/static-offline-docs/swagger-ui.css", "/openapi.json"):
        refused = guarded.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic "), path
        assert guarded.get(path, headers={"Authorization": _basic(TOKEN)}).status_code == 200, path
    assert guarded.get("/search/batch").headers["www-authenticate"].startswith("Bearer "), "a program: Bearer"


def test_a_server_on_another_loopback_address_answers_its_own_address() -> None:
    """Bound to 127.0.0.2 (or ::1 written out), every request was refused and told to use 127.0.0.1, where
    nothing listens."""
    assert "127.0.0.2:8000" in allowed_hosts("127.0.0.2", 8000)
    assert "[0:0:0:0:0:0:0:1]:8000" in allowed_hosts("0:0:0:0:0:0:0:1", 8000)
    assert "evil.example:8000" not in allowed_hosts("127.0.0.2", 8000)


def test_the_docs_may_not_be_framed(client) -> None:  # noqa: F811
    """/docs runs Swagger with the token a user authorised: no other site may frame it (clickjacking)."""
    csp = client.get("/docs").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp


def test_a_websocket_handshake_is_refused_without_a_traceback(served, guarded) -> None:  # noqa: F811
    """No route speaks WebSocket; the Guard answered a handshake without the token, or for another Host, with an
    HTTP message on the WebSocket channel (a RuntimeError in the operator's log, 500 to the client)."""
    from starlette.websockets import WebSocketDisconnect

    hosts = TestClient(create_app(served, hosts=allowed_hosts("127.0.0.1", 8000)))
    for tried, headers in ((guarded, {}), (hosts, {"host": "evil.example:8000"})):
        with pytest.raises(WebSocketDisconnect) as refused, tried.websocket_connect("/", headers=headers):
            pass
        assert refused.value.code == 1008


def test_serve_on_ipv6_loopback_prints_an_address_a_browser_opens(served) -> None:  # noqa: F811
    """`serve --host ::1` printed http://::1:PORT, which no browser or curl opens; and it answers [::1]."""
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    port = _free_port()
    command = [sys.executable, "-m", "legalsearch", "serve", "--index", str(served.path), "--host", "::1"]
    server = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(f"http://[::1]:{port}/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert f"on http://[::1]:{port} " in stderr, stderr
