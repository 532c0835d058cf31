"""generate_self_signed_cert's certificates, and FederationTlsOptions checking them on real connections."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from homeserver.crypto.tls import FederationTlsOptions, generate_self_signed_cert
from homeserver.types.identifiers import InvalidIdentifier
from tests.federation_harness import ScriptedResource, TlsServer, json_answer, trust_root


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)} | {
        f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)
    }


def test_certificate_names_the_server_host_localhost_and_loopback(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    generate_self_signed_cert(str(cert_path), str(key_path), "matrix.example.com:8448")
    cert = load(cert_path)
    assert sans(cert) == {"DNS:matrix.example.com", "DNS:localhost", "IP:127.0.0.1"}
    assert cert.issuer == cert.subject  # self-signed
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650
    # The private key is readable by the owner only.
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("127.0.0.1:8448", {"IP:127.0.0.1", "DNS:localhost"}),
        ("[::1]:8448", {"IP:::1", "DNS:localhost", "IP:127.0.0.1"}),
        ("localhost", {"DNS:localhost", "IP:127.0.0.1"}),
    ],
)
def test_ip_literal_and_localhost_names(
    tmp_path: Path, server_name: str, expected: set[str]
) -> None:
    generate_self_signed_cert(str(tmp_path / "c"), str(tmp_path / "k"), server_name)
    names = sans(load(tmp_path / "c"))
    assert names == {
        n if not n.startswith("IP:") else f"IP:{ipaddress.ip_address(n[3:])}" for n in expected
    }


def test_existing_files_are_not_replaced_unless_asked(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "c", tmp_path / "k"
    generate_self_signed_cert(str(cert_path), str(key_path), "example.com")
    first = cert_path.read_bytes()
    with pytest.raises(FileExistsError):
        generate_self_signed_cert(str(cert_path), str(key_path), "example.com")
    assert cert_path.read_bytes() == first
    generate_self_signed_cert(str(cert_path), str(key_path), "example.com", overwrite=True)
    assert cert_path.read_bytes() != first


def test_invalid_server_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdentifier):
        generate_self_signed_cert(str(tmp_path / "c"), str(tmp_path / "k"), "not a name")
    assert not (tmp_path / "k").exists()


async def _get(reactor: Any, tls: FederationTlsOptions, url: str) -> bytes:
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await Agent(reactor, contextFactory=tls, pool=pool).request(b"GET", url.encode())
    return await readBody(response)


async def test_certificate_verifies_for_localhost_and_127_0_0_1(reactor: Any) -> None:
    """A client trusting the certificate accepts it for both loopback names of its SANs."""
    root = ScriptedResource({"/ping": json_answer(b'{"ok":true}')})
    srv = TlsServer(reactor, root, "remote.test")
    try:
        tls = FederationTlsOptions(trust_root=trust_root("remote.test"))
        for host in ("localhost", "127.0.0.1"):
            assert await _get(reactor, tls, f"https://{host}:{srv.port}/ping") == b'{"ok":true}'
    finally:
        await srv.stop()


async def test_untrusted_certificate_is_refused_unless_verification_is_off(reactor: Any) -> None:
    root = ScriptedResource({"/ping": json_answer(b'{"ok":true}')})
    srv = TlsServer(reactor, root, "remote.test")
    try:
        # Trusting another certificate: refused.
        strict = FederationTlsOptions(trust_root=trust_root("other.test"))
        with pytest.raises(Exception) as info:
            await _get(reactor, strict, f"https://127.0.0.1:{srv.port}/ping")
        assert "certificate verify failed" in repr(info.value.reasons)
        assert not root.requests
        # federation_verify_certificates: false
        lax = FederationTlsOptions(verify=False)
        assert await _get(reactor, lax, f"https://127.0.0.1:{srv.port}/ping") == b'{"ok":true}'
    finally:
        await srv.stop()


async def test_minimum_tls_version_is_applied(reactor: Any) -> None:
    """A client asking for TLS 1.3 at least still talks to a TLS 1.3 server."""
    root = ScriptedResource({"/ping": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "remote.test")
    try:
        tls = FederationTlsOptions(minimum_tls_version="1.3", trust_root=trust_root("remote.test"))
        assert await _get(reactor, tls, f"https://localhost:{srv.port}/ping") == b"{}"
    finally:
        await srv.stop()
