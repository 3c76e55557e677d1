"""A TLS server for the tests: certificates from a CA of the test's own, and the
server's ``rediss://`` URL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import RedisServer


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder: Path, name: str) -> Path:
    """A CA of its own, and a server and a client certificate it signed."""
    folder.mkdir(parents=True)
    ca_key, ca = folder / "ca.key", folder / "ca.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "2", "-subj", f"/CN={name}")  # fmt: skip
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        key, csr, crt = (folder / f"{who}.{x}" for x in ("key", "csr", "crt"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                str(csr), "-subj", f"/CN={who}")  # fmt: skip
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                "-CAcreateserial", "-out", str(crt), "-days", "2",
                "-extfile", str(ext))  # fmt: skip
    return folder


def require_tls_server() -> None:
    """The suite's server must speak TLS. In CI a missing one fails (.ci/run installs
    it); on a developer's machine without it these tests are skipped, saying what to
    install."""
    from tests.conftest import server_binary

    out = subprocess.run([server_binary(), "--version"], capture_output=True, text=True)
    if "Redis server" in out.stdout and shutil.which("openssl"):
        return
    why = (
        f"{server_binary()} has no TLS: the TLS tests need Debian's redis-server and "
        "openssl (apt-get install redis-server openssl)"
    )
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def tls_url(server: RedisServer, certs: Path, *, ca: Path | None = None) -> str:
    port = server.extra[1]
    query = (
        f"ssl_cert_reqs=required&ssl_ca_certs={ca or certs / 'ca.crt'}"
        f"&ssl_certfile={certs / 'client.crt'}&ssl_keyfile={certs / 'client.key'}"
    )
    return f"rediss://127.0.0.1:{port}/0?{query}"
