"""HTTPS certificates for native mode: ``make tls-cert`` makes a self-signed one for localhost,
and ``make up TLS=1`` checks the pair nginx will load before anything starts."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

from .preflight import StackError
from .settings import StackSettings

# ECDSA P-256, as ACME clients issue by default: the cheapest handshake of the keys browsers
# accept. 90 days, as a public CA's certificate.
CERTIFICATE_DAYS = 90


def make_certificate(folder: Path, days: int = CERTIFICATE_DAYS) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (and 127.0.0.1, ::1) in ``folder``: tls.crt and
    tls.key, the key readable by its owner only. For local use: no client trusts it unasked."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "tls.crt", folder / "tls.key"
    key.unlink(missing_ok=True)
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", str(days), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
         "-addext", "extendedKeyUsage=serverAuth",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077),
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(f"openssl could not make the certificate: {result.stderr.strip()}")
    cert.chmod(0o644)
    return cert, key


def check_certificate(settings: StackSettings) -> None:
    """The certificate and key nginx will load: present, readable, PEM, and a pair; said in
    one sentence before anything starts, rather than as nginx's failure to start."""
    cert, key = settings.tls_certificate, settings.tls_certificate_key
    made_here = cert == StackSettings.model_fields["tls_certificate"].default
    hint = "make tls-cert makes one for localhost" if made_here else "set TWINSTACK_TLS_CERTIFICATE(_KEY)"
    for name, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise StackError(f"TLS is on, but there is no {name} at {path} ({hint}).")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise StackError(f"TLS is on, but {cert} and {key} are not a PEM certificate and its key: {exc}") from None
