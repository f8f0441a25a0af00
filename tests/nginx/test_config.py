"""The committed nginx configuration: valid, fully rendered, and saying what it promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from native import nginx_config
from native.settings import StackSettings

ROOT = Path(__file__).resolve().parents[2]
NGINX = ROOT / "nginx"


@pytest.fixture
def rendered(tmp_path: Path, nginx_bin: str) -> Path:
    settings = StackSettings(run_dir=tmp_path, log_dir=tmp_path, http_port=18080)
    env = settings.environment()
    env["TWINSTACK_NGINX_TEMP_DIR"] = str(tmp_path / "nginx" / "temp")
    return nginx_config.render(env, tmp_path / "nginx")


def test_nginx_t_passes(rendered: Path, nginx_bin: str, tmp_path: Path):
    nginx_config.check(nginx_bin, rendered, StackSettings.nginx_globals(rendered, foreground=False))


def test_nginx_t_reports_a_broken_config(rendered: Path, nginx_bin: str):
    (rendered / "conf.d" / "broken.conf").write_text("this_is_not_a_directive on;\n")
    with pytest.raises(nginx_config.RenderError, match="unknown directive"):
        nginx_config.check(nginx_bin, rendered, StackSettings.nginx_globals(rendered, foreground=False))


def test_every_placeholder_is_rendered(rendered: Path):
    confs = sorted((rendered / "conf.d").glob("*.conf"))
    templates = list((NGINX / "templates").glob("*.template"))
    assert templates and len(confs) == len(templates)  # every template, and not none of none
    for conf in confs:
        assert "${" not in conf.read_text(), conf.name


def test_render_refuses_an_unset_variable():
    with pytest.raises(nginx_config.RenderError, match="TWINSTACK_NOT_SET"):
        nginx_config.render_template("listen ${TWINSTACK_NOT_SET};", {})


def test_nginx_variables_are_left_alone():
    assert nginx_config.render_template("proxy_set_header Host $http_host;", {}) == "proxy_set_header Host $http_host;"


def test_every_template_variable_is_provided_by_native_mode():
    used = set()
    for template in (NGINX / "templates").glob("*.template"):
        used |= set(nginx_config.PLACEHOLDER.findall(template.read_text()))
    assert used
    assert used <= set(StackSettings().environment())


def test_security_basics():
    conf = (NGINX / "nginx.conf").read_text()
    assert re.search(r"^\s*server_tokens off;", conf, re.M)
    headers = (NGINX / "snippets" / "security.conf").read_text()
    for header in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "X-Request-ID"):
        assert header in headers


def test_every_error_status_nginx_produces_has_a_json_body():
    errors = (NGINX / "snippets" / "errors.conf").read_text() + (NGINX / "snippets" / "error-pages.conf").read_text()
    for status in (400, 404, 405, 413, 414, 429, 500, 501, 502, 503, 504):
        assert f"error_page {status} /_error/{status};" in errors
        assert re.search(
            rf"location = /_error/{status} {{ internal; types {{ }} default_type application/json;[^{{}}]* "
            rf"return {status} ",
            errors,
        )
    assert "error_page 494 =400 /_error/494;" in errors  # nginx's code for a header too large


def test_the_web_root_is_copied_only_when_the_native_runner_asks(tmp_path: Path):
    """As root, native mode serves a copy under /run/twinstack; no other runner's paths (the
    image's /usr/share/twinstack) are ever written, and publish refuses anything else."""
    env = StackSettings(run_dir=tmp_path).environment()
    env.update(TWINSTACK_WEB_ROOT=str(tmp_path / "html"), TWINSTACK_WEB_ROOT_COPY="false")
    nginx_config.render(env, tmp_path / "nginx")
    assert not (tmp_path / "html").exists()
    with pytest.raises(nginx_config.RenderError, match="refusing"):
        nginx_config.publish(tmp_path / "html", tmp_path / "temp")
    with pytest.raises(nginx_config.RenderError, match="refusing"):
        nginx_config.publish(NGINX / "html", tmp_path / "temp")


def test_nginx_refuses_bodies_over_the_contracts_limit():
    """nginx.conf is copied, not rendered, so it states the body limit; it must be the one
    both services hold (twinstack_contract/limits.py)."""
    from twinstack_contract.limits import MAX_BODY_BYTES

    stated = re.findall(r"^\s*client_max_body_size (\d+)k;", (NGINX / "nginx.conf").read_text(), re.M)
    assert [int(k) * 1024 for k in stated] == [MAX_BODY_BYTES]
