"""TLS material from files: server contexts (the listener, the admin API) that reload on
SIGHUP, and gRPC channel credentials for upstreams.

Rules:
- Files are PEM. At start a file that cannot be read or loaded is a ``ConfigError`` naming
  its setting (one line, exit 2).
- ``ServerTls.reload()`` loads the certificate and key again into the *same* ``SSLContext``:
  handshakes after it present the new pair, sockets already open keep theirs. The pair is
  first loaded into a scratch context, so a bad file is logged and the old pair stays.
  The client CA (``--tls-client-ca``) is read at start only.
- With a client CA, a client must present a certificate it signed (mTLS).
- Upstream credentials: the CA file (else the system's CAs) checks the upstream's
  certificate; a certificate and key, when given, are this node's client certificate.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from paradoxplex.shared.config import NodeConfig
from paradoxplex.shared.errors import ConfigError

log = logging.getLogger("paradoxplex.node.tls")


def read_pem(flag: str, path: str, marker: bytes) -> bytes:
    """The file's bytes; a ConfigError naming ``flag`` if unreadable or without ``marker``."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(flag, f"cannot read {path}: {error.strerror or error}") from None
    if marker not in data:
        raise ConfigError(flag, f"{path} is not PEM (no {marker.decode()} block)")
    return data


CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
PRIVATE_KEY = b"PRIVATE KEY-----"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A certificate and key (and a client CA) with the names of their settings."""

    cert: str
    key: str
    client_ca: str | None = None
    flags: tuple[str, str, str] = ("--tls-cert", "--tls-key", "--tls-client-ca")

    def check(self) -> None:
        """Raise ``ConfigError`` naming the setting of a file that will not load."""
        cert_flag, key_flag, ca_flag = self.flags
        read_pem(cert_flag, self.cert, CERTIFICATE)
        read_pem(key_flag, self.key, PRIVATE_KEY)
        if self.client_ca is not None:
            read_pem(ca_flag, self.client_ca, CERTIFICATE)
        _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self)


def _load_pair(context: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as error:
        cert_flag, key_flag, _ = files.flags
        if "KEY_VALUES_MISMATCH" in str(error):
            raise ConfigError(key_flag, f"{files.key} does not match {cert_flag}") from None
        reason = getattr(error, "reason", None) or str(error)
        problem = f"cannot load {files.cert} with {files.key}: {reason}"
        raise ConfigError(cert_flag, problem) from None


class ServerTls:
    """A server ``SSLContext`` from files, reloadable in place (see the module's rules)."""

    def __init__(self, files: TlsFiles) -> None:
        files.check()
        self.files = files
        self.reloads = 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_pair(context, files)
        if files.client_ca is not None:
            try:
                context.load_verify_locations(cafile=files.client_ca)
            except (ssl.SSLError, OSError) as error:
                reason = getattr(error, "reason", None) or str(error)
                problem = f"cannot load {files.client_ca}: {reason}"
                raise ConfigError(files.flags[2], problem) from None
            context.verify_mode = ssl.CERT_REQUIRED
        self.context = context

    @classmethod
    def optional(cls, files: TlsFiles | None) -> ServerTls | None:
        return None if files is None else cls(files)

    def reload(self) -> bool:
        """Load the certificate and key again; False (logged, old pair kept) when they fail."""
        try:
            self.files.check()
            _load_pair(self.context, self.files)
        except ConfigError as error:
            log.error("TLS reload failed, keeping the current certificate: %s", error)
            return False
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.files.cert)
        return True

    def __repr__(self) -> str:
        mtls = " mtls" if self.files.client_ca else ""
        return f"<ServerTls {self.files.cert}{mtls} reloads={self.reloads}>"


def channel_credentials(
    ca: str | None, cert: str | None, key: str | None
) -> grpc.ChannelCredentials:
    """Credentials for TLS channels to upstreams (flags ``--upstream-tls-*``)."""
    root = read_pem("--upstream-tls-ca", ca, CERTIFICATE) if ca else None
    chain = read_pem("--upstream-tls-cert", cert, CERTIFICATE) if cert else None
    private = read_pem("--upstream-tls-key", key, PRIVATE_KEY) if key else None
    if cert and key:
        flags = ("--upstream-tls-cert", "--upstream-tls-key", "")
        _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), TlsFiles(cert, key, flags=flags))
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private, certificate_chain=chain
    )


def listener_files(config: NodeConfig) -> TlsFiles | None:
    """The listener's TLS files (``--tls-*``), or None: plain TCP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    return TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca)


def admin_files(config: NodeConfig) -> TlsFiles | None:
    """The admin API's TLS files (``--admin-tls-*``), or None: plain http."""
    if config.admin_tls_cert is None or config.admin_tls_key is None:
        return None
    flags = ("--admin-tls-cert", "--admin-tls-key", "")
    return TlsFiles(config.admin_tls_cert, config.admin_tls_key, flags=flags)


def file_problems(config: NodeConfig) -> list[tuple[str, str | None]]:
    """(setting, problem or None) for each TLS file setting in use (``node --check``)."""
    loads: list[tuple[str, Callable[[], object]]] = []
    listener, admin = listener_files(config), admin_files(config)
    if listener is not None:
        loads.append(("--tls-cert", lambda: ServerTls(listener)))
    if admin is not None:
        loads.append(("--admin-tls-cert", lambda: ServerTls(admin)))
    if config.upstream_tls_ca or config.upstream_tls_cert:
        loads.append(("--upstream-tls-ca/cert", lambda: upstream_credentials(config)))
    return [(what, _problem(load)) for what, load in loads]


def upstream_credentials(config: NodeConfig) -> grpc.ChannelCredentials:
    """The node's credentials for TLS upstreams, from its ``--upstream-tls-*`` files."""
    return channel_credentials(
        config.upstream_tls_ca, config.upstream_tls_cert, config.upstream_tls_key
    )


def _problem(load: Callable[[], object]) -> str | None:
    try:
        load()
    except ConfigError as error:
        return str(error)
    return None
