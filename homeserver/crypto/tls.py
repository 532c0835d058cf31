"""TLS for federation: self-signed certificates for listeners, and the client side's options.

`generate_self_signed_cert` writes a certificate and key a TLS listener can
serve (the CLI's `--generate-tls-cert`): enough for tests and for peers that
run with `federation_verify_certificates: false`, as a Synapse federating with
this server on the same machine does.

`FederationTlsOptions` makes the client-side TLS connection creators of the
federation client (spec: server-server API, "TLS"): certificates are checked
against the platform's trust store (or a given trust root) for the name the
server discovery step says the target must present, with SNI for DNS names
and none for IP literals; with `verify=False` (`federation_verify_certificates:
false`) nothing is checked but SNI is still sent. The oldest TLS version is
`federation_client_minimum_tls_version`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLContextFactory
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from homeserver.types.identifiers import parse_server_name

CERT_VALIDITY_DAYS = 3650

_TLS_VERSIONS = {
    "1": ssl.TLSVersion.TLSv1_0,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def generate_self_signed_cert(
    cert_path: str,
    key_path: str,
    server_name: str,
    *,
    overwrite: bool = False,
    now: datetime.datetime | None = None,
) -> None:
    """Write a self-signed certificate (PEM) and its RSA-2048 private key (PEM, mode 0600).

    The subject alternative names are the host of `server_name` (its port
    dropped; a DNS name or an IP literal), `DNS:localhost` and
    `IP:127.0.0.1`. Valid for ten years from `now` (default: the current
    time, a day earlier to allow for clock skew). Refuses to replace
    existing files unless `overwrite` (FileExistsError); raises
    `homeserver.types.identifiers.InvalidIdentifier` for a bad server name.
    """
    host = parse_server_name(server_name).host.strip("[]")
    names: list[x509.GeneralName] = []
    if isIPAddress(host) or isIPv6Address(host):
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    else:
        names.append(x509.DNSName(host))
    for extra in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        if extra not in names:
            names.append(extra)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, host if len(host) <= 64 else "homeserver")]
    )
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600, overwrite)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite)


def _write(path: str, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedConnectionCreator:
    """Connections that check no certificate but still send SNI for a DNS name."""

    def __init__(self, context: SSL.Context, tls_name: str) -> None:
        self._context = context
        self._sni = None if (isIPAddress(tls_name) or isIPv6Address(tls_name)) else tls_name

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if self._sni:
            connection.set_tlsext_host_name(self._sni.encode("idna"))
        return connection


@implementer(IPolicyForHTTPS)
class FederationTlsOptions:
    """Client TLS connection creators for federation, by the name the server must present."""

    _MAX_CACHED = 1000

    def __init__(
        self,
        verify: bool = True,
        minimum_tls_version: str = "1",
        trust_root: IOpenSSLTrustRoot | None = None,
    ) -> None:
        """
        Args:
            verify: check certificates (federation_verify_certificates).
            minimum_tls_version: "1", "1.1", "1.2" or "1.3".
            trust_root: the certificate authorities to trust; default the
                platform's (tests pass `ssl.trustRootFromCertificates([...])`).
        """
        self._verify = verify
        self._minimum = _TLS_VERSIONS[minimum_tls_version]
        self._trust_root = trust_root
        self._creators: dict[str, IOpenSSLClientConnectionCreator] = {}
        self._unverified_context: SSL.Context | None = None

    def creator_for(self, tls_name: str) -> IOpenSSLClientConnectionCreator:
        """The creator for a connection whose certificate must be valid for `tls_name`.

        `tls_name` is a DNS name or an IP literal (IPv6 without brackets).
        """
        creator: Any = self._creators.get(tls_name)
        if creator is not None:
            return creator  # type: ignore[no-any-return]
        if self._verify:
            creator = ssl.optionsForClientTLS(
                tls_name,
                trustRoot=self._trust_root if self._trust_root is not None else ssl.platformTrust(),
                extraCertificateOptions={"raiseMinimumTo": self._minimum},
            )
        else:
            if self._unverified_context is None:
                options = ssl.CertificateOptions(verify=False, raiseMinimumTo=self._minimum)
                self._unverified_context = options.getContext()
            creator = _UnverifiedConnectionCreator(self._unverified_context, tls_name)
        if len(self._creators) >= self._MAX_CACHED:
            self._creators.clear()
        self._creators[tls_name] = creator
        return creator  # type: ignore[no-any-return]

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """IPolicyForHTTPS, for a plain twisted.web Agent (the .well-known lookup)."""
        return self.creator_for(hostname.decode("ascii").strip("[]"))


class TlsLoadError(Exception):
    """The listener's certificate or key could not be loaded; one line for the operator."""


def load_server_tls_options(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    """Server TLS options from a PEM certificate chain (leaf first) and its PEM private key."""
    from OpenSSL import crypto

    try:
        with open(cert_path, "rb") as f:
            pem = f.read()
        with open(key_path, "rb") as f:
            key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
        certs = [
            crypto.load_certificate(crypto.FILETYPE_PEM, block + b"-----END CERTIFICATE-----\n")
            for block in pem.split(b"-----END CERTIFICATE-----")
            if b"-----BEGIN CERTIFICATE-----" in block
        ]
    except (OSError, crypto.Error) as e:
        raise TlsLoadError(f"cannot load the TLS certificate or key: {e}") from e
    if not certs:
        raise TlsLoadError(f"{cert_path}: no certificate found")
    options = ssl.CertificateOptions(privateKey=key, certificate=certs[0], extraCertChain=certs[1:])
    try:
        options.getContext()  # a key that does not match the certificate fails here
    except SSL.Error as e:
        raise TlsLoadError(f"{key_path} does not match {cert_path}: {e}") from e
    return options


@implementer(IOpenSSLContextFactory)
class ReloadableServerTls:
    """The TLS context of the listeners, replaced in place when the files are re-read.

    Twisted asks the context factory for a context on each new connection, so
    connections made after `reload()` present the new certificate while those
    already open keep theirs (operators renew certificates without a restart,
    by SIGHUP, as with Synapse).
    """

    def __init__(self, cert_path: str, key_path: str) -> None:
        self._cert_path = cert_path
        self._key_path = key_path
        self._options = load_server_tls_options(cert_path, key_path)

    def reload(self) -> None:
        """Re-read the files; on TlsLoadError the current certificate stays in use."""
        self._options = load_server_tls_options(self._cert_path, self._key_path)

    def getContext(self) -> SSL.Context:
        return self._options.getContext()
