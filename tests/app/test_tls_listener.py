"""The TLS listener: serves the configured certificate, and a new one after reload_tls (SIGHUP)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet import threads

from homeserver.crypto.tls import generate_self_signed_cert
from homeserver.server import HomeServer


def _served_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


async def test_certificate_is_reloaded_and_a_broken_one_is_ignored(
    homeserver_factory: Any, tmp_path: Path
) -> None:
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    generate_self_signed_cert(str(cert_path), str(key_path), "first.test")
    hs: HomeServer = await homeserver_factory.start(
        listeners=[
            {
                "port": 0,
                "tls": True,
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": ["federation"]}],
            }
        ],
        tls_certificate_path=str(cert_path),
        tls_private_key_path=str(key_path),
    )
    port = hs.listening_ports[0].getHost().port
    first = await threads.deferToThread(_served_certificate, port)
    assert "first.test" in _names(first)

    generate_self_signed_cert(str(cert_path), str(key_path), "second.test", overwrite=True)
    hs.reload_tls()
    second = await threads.deferToThread(_served_certificate, port)
    assert "second.test" in _names(second)

    # A half-written renewal (key and certificate that don't match) keeps the current pair.
    generate_self_signed_cert(str(tmp_path / "x.crt"), str(key_path), "third.test", overwrite=True)
    hs.reload_tls()
    still = await threads.deferToThread(_served_certificate, port)
    assert still.fingerprint(still.signature_hash_algorithm) == second.fingerprint(  # type: ignore[arg-type]
        second.signature_hash_algorithm  # type: ignore[arg-type]
    )
