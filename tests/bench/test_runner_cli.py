"""What the lab and `make loadtest` ask of the runner's command line instead of importing native
mode: ``python -m native env``, ``url`` and ``render-nginx PREFIX`` (bench/runner.py), and
``python -m loadtest``, which is told the stack's URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import runner
from bench.procs import LabError
from tests.support import ROOT, clean_environment, free_port
from tests.support import native_cli as native

CLEAN = clean_environment()


def test_env_prints_the_environment_of_the_stacks_programs_with_the_callers_settings(tmp_path):
    result = native("env", TWINSTACK_HTTP_PORT="18123", TWINSTACK_SYNC_PORT="18124", TWINSTACK_RUN_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)
    assert env["TWINSTACK_HTTP_PORT"] == "18123"
    # Derived the way native mode derives them for its programs.
    assert env["TWINSTACK_SYNC_UPSTREAM"] == "127.0.0.1:18124"
    assert env["TWINSTACK_NGINX_TEMP_DIR"].startswith((str(tmp_path), "/run/twinstack/"))
    assert all(isinstance(value, str) for value in env.values())


def test_env_keeps_a_derived_variable_the_caller_set(tmp_path):
    """A caller that runs programs of its own (the lab) points the configuration at them."""
    log = str(tmp_path / "mine.log")
    env = json.loads(native("env", TWINSTACK_NGINX_ACCESS_LOG=log, TWINSTACK_ASYNC_UPSTREAM="127.0.0.1:1").stdout)
    assert env["TWINSTACK_NGINX_ACCESS_LOG"] == log and env["TWINSTACK_ASYNC_UPSTREAM"] == "127.0.0.1:1"


def test_url_is_the_stacks_public_nginx():
    assert native("url", TWINSTACK_HTTP_PORT="18125").stdout == "http://127.0.0.1:18125\n"


@pytest.mark.parametrize("command", [["env"], ["url"], ["render-nginx", "prefix"]])
@pytest.mark.parametrize(("value", "said"), [("abc", "valid integer"), ("0", "greater than or equal to 1")])
def test_a_bad_setting_is_one_clear_line_and_exit_1(command, value, said):
    result = native(*command, TWINSTACK_HTTP_PORT=value)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: invalid setting: TWINSTACK_HTTP_PORT={value}: ") and said in result.stderr
    assert "Traceback" not in result.stderr


def lab_like(tmp_path: Path) -> dict[str, str]:
    """The settings and the variables of the lab's own servers (bench/nginx-bench.conf.template)."""
    return {
        "TWINSTACK_HTTP_PORT": str(free_port()),
        "TWINSTACK_RUN_DIR": str(tmp_path / "run"),
        "TWINSTACK_LOG_DIR": str(tmp_path),
        "TWINSTACK_BENCH_CEILING_PORT": str(free_port()),
        "TWINSTACK_BENCH_PROXY_PORT": str(free_port()),
        "TWINSTACK_BENCH_GTHREAD_UPSTREAM": "127.0.0.1:9",
    }


def test_render_nginx_lays_out_a_checked_prefix_with_the_callers_own_servers(tmp_path, nginx_bin):
    settings = lab_like(tmp_path)
    template = ROOT / "bench" / "nginx-bench.conf.template"
    result = native("render-nginx", str(tmp_path / "nginx"), "--template", str(template), **settings)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    prefix = Path(out["prefix"])
    assert prefix == (tmp_path / "nginx").resolve()
    assert (prefix / "nginx.conf").is_file() and (prefix / "conf.d" / "twinstack.conf").is_file()
    bench = (prefix / "conf.d" / "nginx-bench.conf").read_text()
    assert f"listen 127.0.0.1:{settings['TWINSTACK_BENCH_CEILING_PORT']};" in bench and "${" not in bench
    # The command line that runs it in the foreground on that prefix (what the lab starts).
    assert out["argv"][0] == out["nginx"] and Path(out["nginx"]).name == "nginx"
    assert out["argv"][1:3] == ["-p", f"{prefix}/"] and "daemon off;" in out["argv"][-1]
    assert f"pid {prefix}/nginx.pid;" in out["globals"]


def test_render_nginx_errors_are_one_clear_line_and_exit_1(tmp_path, nginx_bin):
    settings = lab_like(tmp_path)
    missing = native("render-nginx", str(tmp_path / "a"), "--template", str(tmp_path / "nonesuch.template"), **settings)
    assert missing.returncode == 1 and "no such template" in missing.stderr
    # A template that needs a variable nobody set is refused, not rendered half-empty.
    unset = {k: v for k, v in settings.items() if k != "TWINSTACK_BENCH_PROXY_PORT"}
    template = str(ROOT / "bench" / "nginx-bench.conf.template")
    result = native("render-nginx", str(tmp_path / "b"), "--template", template, **unset)
    assert result.returncode == 1 and "nginx template needs TWINSTACK_BENCH_PROXY_PORT" in result.stderr
    no_nginx = native("render-nginx", str(tmp_path / "c"), TWINSTACK_NGINX_BIN=str(tmp_path / "nginx"), **settings)
    assert no_nginx.returncode == 1 and "nginx is not installed" in no_nginx.stderr
    for r in (missing, result, no_nginx):
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_the_lab_reads_the_runner_through_its_command_line(tmp_path, nginx_bin, monkeypatch):
    for name in [k for k in os.environ if k.startswith("TWINSTACK_")]:
        monkeypatch.delenv(name)
    settings = lab_like(tmp_path)
    env = runner.environment(settings)
    assert env["TWINSTACK_BENCH_PROXY_PORT"] == settings["TWINSTACK_BENCH_PROXY_PORT"]
    assert env["TWINSTACK_HTTP_PORT"] == settings["TWINSTACK_HTTP_PORT"] and "PATH" in env
    rendered = runner.render_nginx(env, tmp_path / "nginx", [ROOT / "bench" / "nginx-bench.conf.template"])
    assert rendered.prefix == (tmp_path / "nginx").resolve() and rendered.argv[0].endswith("nginx")
    with pytest.raises(LabError, match=r"^python -m native env: invalid setting: TWINSTACK_HTTP_PORT=x"):
        runner.environment({"TWINSTACK_HTTP_PORT": "x"})


def test_the_load_test_is_told_the_stacks_url():
    result = subprocess.run(
        [sys.executable, "-m", "loadtest", "smoke"], cwd=ROOT, env=CLEAN, capture_output=True, text=True
    )
    assert result.returncode == 2 and "the following arguments are required: --host" in result.stderr
    empty = subprocess.run(
        [sys.executable, "-m", "loadtest", "smoke", "--host", ""], cwd=ROOT, env=CLEAN, capture_output=True, text=True
    )
    assert empty.returncode == 2 and "--host: expected the stack's base URL" in empty.stderr


def test_make_loadtest_asks_the_runner_for_the_url():
    """A dry run (-n): the command printed, nothing started."""
    result = subprocess.run(
        ["make", "-n", "-s", "_loadtest-native", "STACK=native", "PROFILE=smoke"],
        cwd=ROOT,
        env={k: v for k, v in CLEAN.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        capture_output=True,
        text=True,
    )
    line = next(line for line in result.stdout.splitlines() if "-m loadtest" in line)
    assert '-m native url)"' in line and '--host "$host"' in line


def test_cluster_makes_a_postgresql_cluster_another_runner_starts_itself(tmp_path):
    """``python -m native cluster FOLDER --port P``: initdb'd as make up does its own, and how to
    run it, check it and reach it (the lab's PostgreSQL, bench/database.py)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="twinstack-cluster-", dir="/var/tmp"))  # the server's user may enter
    try:
        result = native("cluster", str(folder), "--port", "15999")
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert (folder / "data" / "PG_VERSION").exists()
        assert out["argv"][:5] == [out["argv"][0], "-D", str(folder / "data"), "-p", "15999"]
        assert "listen_addresses=127.0.0.1" in out["argv"] and out["ready"][-1] == "15999"
        assert out["url"].startswith("postgresql://twinstack:") and out["url"].endswith("@127.0.0.1:15999/postgres")
        assert set(out["run_as"]) <= {"user", "group", "extra_groups"}
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_cluster_without_postgresql_says_what_to_install(tmp_path):
    result = native("cluster", str(tmp_path / "c"), "--port", "15999", TWINSTACK_PG_BIN_DIR=str(tmp_path / "none"))
    assert result.returncode == 1
    assert "PostgreSQL is not installed" in result.stderr and "Traceback" not in result.stderr


def test_the_lab_gets_its_certificate_and_an_https_nginx_from_the_runner(tmp_path, nginx_bin, monkeypatch):
    """Claim 15's nginx: a certificate made by ``python -m native tls-cert`` (ECDSA P-256), and
    twinstack's configuration rendered with HTTPS on and the redirect off, the lab's connection
    log beside it."""
    for name in [k for k in os.environ if k.startswith("TWINSTACK_")]:
        monkeypatch.delenv(name)
    cert, key = runner.tls_certificate(tmp_path / "tls")
    assert (cert, key) == (tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key")
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True, text=True)
    assert "id-ecPublicKey" in text.stdout and "prime256v1" in text.stdout, text.stdout + text.stderr
    tls_port, full_port, log = free_port(), free_port(), tmp_path / "connections.log"
    settings = {
        **lab_like(tmp_path),
        "TWINSTACK_TLS": "true", "TWINSTACK_TLS_PORT": str(tls_port), "TWINSTACK_TLS_PUBLIC_PORT": str(tls_port),
        "TWINSTACK_TLS_CERTIFICATE": str(cert), "TWINSTACK_TLS_CERTIFICATE_KEY": str(key),
        "TWINSTACK_TLS_REDIRECT": "false", "TWINSTACK_BENCH_CONNECTIONS_LOG": str(log),
        "TWINSTACK_BENCH_NO_RESUMPTION_PORT": str(full_port),
    }  # fmt: skip
    rendered = runner.render_nginx(
        runner.environment(settings), tmp_path / "nginx", [ROOT / "bench" / "nginx-tls.conf.template"]
    )
    conf = rendered.prefix / "conf.d"
    assert f"listen {tls_port} ssl" in (conf / "tls" / "twinstack-tls.conf").read_text()
    assert "return 308" in (conf / "twinstack.conf").read_text()  # the redirect is there, switched off:
    assert 'map "$scheme:false"' in (conf / "twinstack.conf").read_text()
    lab = (conf / "nginx-tls.conf").read_text()
    assert f"access_log {log} twinstack_lab_connections" in lab
    assert f"listen 127.0.0.1:{full_port} ssl;" in lab and "ssl_session_cache off;" in lab
    with pytest.raises(LabError, match=r"^python -m native tls-cert: "):
        runner.tls_certificate(tmp_path / "tls" / "tls.crt" / "below-a-file")
