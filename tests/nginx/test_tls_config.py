"""The HTTPS server as native mode renders it: HTTP/2 in the form the running nginx needs, and
the certificate checked before anything starts (the server itself: tests/integration/test_tls.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from native import nginx_config
from native.certificates import check_certificate, make_certificate
from native.preflight import StackError
from native.settings import StackSettings
from tests.support import ROOT, free_port


@pytest.mark.parametrize(
    ("version", "listen", "snippet"),
    [((1, 22, 1), "http2", "before-1.25.1"), ((1, 25, 0), "http2", "before-1.25.1"), ((1, 25, 1), "", "1.25.1"),
     ((1, 25, 4), "", "1.25.1"), ((1, 25, 5), "", "1.25.5"), ((1, 30, 6), "", "1.25.5"), ((2, 0, 0), "", "1.25.5")],
)  # fmt: skip
def test_https_is_written_as_each_nginx_version_needs(version, listen, snippet):
    assert nginx_config.tls_version_variables(version) == {
        "TWINSTACK_TLS_LISTEN_HTTP2": listen,
        "TWINSTACK_TLS_NGINX": snippet,
    }
    text = (ROOT / "nginx" / "snippets" / f"tls-nginx-{snippet}.conf").read_text()
    directives = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert ("http2 on;" in directives) == (listen == "")  # HTTP/2 one way or the other, never both
    assert ("ssl_handshake_timeout 10s;" in directives) == (version >= (1, 25, 5))


def fake_nginx(tmp_path: Path, says: str, name: str = "nginx") -> str:
    binary = tmp_path / name
    binary.write_text(f"#!/bin/sh\necho '{says}' >&2\n")
    binary.chmod(0o755)
    return str(binary)


def test_the_version_is_read_from_nginx_v(tmp_path):
    assert nginx_config.version(fake_nginx(tmp_path, "nginx version: nginx/1.22.1")) == (1, 22, 1)
    with pytest.raises(nginx_config.RenderError, match=r"cannot tell .* version"):
        nginx_config.version(fake_nginx(tmp_path, "openresty", name="not-nginx"))


def rendered_tls(tmp_path: Path, nginx_bin: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    """The native configuration with HTTPS on, rendered and checked by this host's nginx."""
    cert, key = make_certificate(tmp_path / "certs")
    settings = StackSettings(
        run_dir=tmp_path / "run", tls=True, tls_port=free_port(), tls_certificate=cert, tls_certificate_key=key
    )
    env = {**settings.environment(), **overrides}
    env["TWINSTACK_NGINX_TEMP_DIR"] = str(tmp_path / "nginx" / "temp")
    env["TWINSTACK_NGINX_ACCESS_LOG"] = env["TWINSTACK_NGINX_ERROR_LOG"] = str(tmp_path / "nginx.log")
    env["TWINSTACK_WEB_ROOT_COPY"] = "false"
    prefix = nginx_config.render(env, tmp_path / "nginx")
    assert (prefix / "conf.d" / "tls" / "twinstack-tls.conf").is_file()
    globals_ = settings.nginx_globals(prefix, foreground=False)
    return subprocess.run(
        [nginx_bin, "-t", "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr", "-g", globals_],
        capture_output=True,
        text=True,
    )


def test_this_hosts_nginx_accepts_the_https_server_without_a_warning(tmp_path, nginx_bin):
    result = rendered_tls(tmp_path, nginx_bin)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "deprecated" not in result.stderr, result.stderr


def test_the_other_versions_form_is_not_what_this_nginx_takes(tmp_path, nginx_bin):
    """The choice matters: this nginx refuses (1.22: no `http2` directive) or warns about
    (1.25.1+: `listen ... http2` deprecated) the form for the other side of 1.25.1."""
    mine = nginx_config.version(nginx_bin)
    other = (1, 22, 1) if mine >= nginx_config.HTTP2_DIRECTIVE_SINCE else nginx_config.HTTP2_DIRECTIVE_SINCE
    result = rendered_tls(tmp_path, nginx_bin, **nginx_config.tls_version_variables(other))
    if mine >= nginx_config.HTTP2_DIRECTIVE_SINCE:  # takes it, with a warning
        assert result.returncode == 0, result.stderr
        assert 'the "listen ... http2" directive is deprecated' in result.stderr, result.stderr
    else:  # refuses it: an error about the directive itself, not any failure of nginx -t
        assert result.returncode != 0
        assert 'unknown directive "http2"' in result.stderr, result.stderr


def test_the_plain_server_alone_when_https_is_off(tmp_path):
    env = StackSettings(run_dir=tmp_path / "run").environment()
    env["TWINSTACK_WEB_ROOT_COPY"] = "false"
    prefix = nginx_config.render(env, tmp_path / "nginx")
    assert not (prefix / "conf.d" / "tls").exists()
    assert env["TWINSTACK_TLS_REDIRECT"] == "false"


# --- the certificate, checked before anything starts -------------------------------------


def settings_with(cert: Path, key: Path) -> StackSettings:
    return StackSettings(tls=True, tls_certificate=cert, tls_certificate_key=key)


def test_a_made_certificate_passes_and_is_for_localhost(tmp_path):
    cert, key = make_certificate(tmp_path)
    check_certificate(settings_with(cert, key))
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", cert], capture_output=True, text=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text and "prime256v1" in text


def test_a_missing_certificate_names_the_file_and_what_to_do(tmp_path):
    with pytest.raises(StackError, match=r"no certificate at .*nope\.crt \(set TWINSTACK_TLS_CERTIFICATE"):
        check_certificate(settings_with(tmp_path / "nope.crt", tmp_path / "nope.key"))
    default = StackSettings(tls=True)
    if not default.tls_certificate.exists():
        with pytest.raises(StackError, match="make tls-cert makes one for localhost"):
            check_certificate(default)


def test_a_missing_key_is_named(tmp_path):
    cert, key = make_certificate(tmp_path)
    key.unlink()
    with pytest.raises(StackError, match=r"no key at .*tls\.key"):
        check_certificate(settings_with(cert, key))


def test_a_file_that_is_not_pem_is_refused(tmp_path):
    cert, key = make_certificate(tmp_path)
    cert.write_text("not a certificate\n")
    with pytest.raises(StackError, match="not a PEM certificate and its key"):
        check_certificate(settings_with(cert, key))


def test_a_key_of_another_certificate_is_refused(tmp_path):
    cert, _ = make_certificate(tmp_path / "one")
    _, other_key = make_certificate(tmp_path / "two")
    with pytest.raises(StackError, match="not a PEM certificate and its key"):
        check_certificate(settings_with(cert, other_key))


def native_up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    ports = {name: str(free_port()) for name in (
        "TWINSTACK_HTTP_PORT", "TWINSTACK_ASYNC_PORT", "TWINSTACK_SYNC_PORT", "TWINSTACK_DOWNSTREAM_PORT",
        "TWINSTACK_LOCUST_PORT", "TWINSTACK_NGINX_STATUS_PORT", "TWINSTACK_DB_PORT")}  # fmt: skip
    environ = {**os.environ, **ports, "TWINSTACK_RUN_DIR": str(tmp_path / "run"),
               "TWINSTACK_LOG_DIR": str(tmp_path / "logs"), "TWINSTACK_TLS": "true", **env}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "native", "up"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_up_without_a_certificate_stops_before_starting_anything(tmp_path, nginx_bin):
    result = native_up(tmp_path, TWINSTACK_TLS_CERTIFICATE=str(tmp_path / "missing.crt"))
    assert result.returncode == 1
    assert f"TLS is on, but there is no certificate at {tmp_path / 'missing.crt'}" in result.stderr
    assert not (tmp_path / "run" / "supervisord.pid").exists()


def test_up_says_when_the_https_port_is_taken(tmp_path, nginx_bin):
    cert, key = make_certificate(tmp_path / "certs")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = native_up(
            tmp_path, TWINSTACK_TLS_PORT=str(port), TWINSTACK_TLS_CERTIFICATE=str(cert),
            TWINSTACK_TLS_CERTIFICATE_KEY=str(key),
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port busy: nginx https ({port})" in result.stderr
