"""gixy (the gixy-ng package), nginx's configuration analyser, on the configuration every
runner renders: native mode (with HTTPS on too), Docker Compose, Compose with the TLS override, and the lab's
nginx (bench/). Every finding fails the test unless ALLOWED explains it; an entry that no
longer matches anything fails too, so the list cannot outlive its reasons."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gixy.core.config import Config
from gixy.core.manager import Manager
from gixy.core.plugins_manager import PluginsManager

from native import nginx_config
from native.settings import StackSettings, deployed
from tests.docker.test_compose import environment, image_nginx_version
from tests.support import ROOT

# The lab's nginx where the project has the lab (parts.yml).
RUNNERS = ("native", "native-tls", "compose", "compose-tls", *(("lab",) if (ROOT / "bench").is_dir() else ()))
TLS_RUNNERS = frozenset({"native-tls", "compose-tls"})
COMPOSE_RUNNERS = frozenset({"compose", "compose-tls"})
# The CORS regex that allows no origin (native mode's default). gixy-ng 0.2.59's `origins`
# check crashes on it (IndexError in parse_url on the empty candidate it generates; the
# Gixy-Next fork has fixed it), and a regex that matches nothing has nothing to find. The
# check runs wherever a real regex is rendered: the Compose runners (.env.example's example).
NO_ORIGIN = "^(?!)"


@dataclass(frozen=True)
class Finding:
    plugin: str
    severity: str
    directive: str  # the first directive the issue names, as gixy prints it
    reason: str
    where: str  # the block and file:line of the last directive it names (the offending one)

    def __str__(self) -> str:
        return f"[{self.plugin}] {self.severity} in {self.where}: {self.directive}\n    {self.reason}"


@dataclass(frozen=True)
class Allowed:
    plugin: str
    pattern: str  # a regex searched in "<directive>\n<reason>"
    why: str
    runners: frozenset[str] = frozenset(RUNNERS)

    def matches(self, runner: str, finding: Finding) -> bool:
        return (
            runner in self.runners
            and finding.plugin == self.plugin
            and re.search(self.pattern, f"{finding.directive}\n{finding.reason}") is not None
        )


ALLOWED = (
    Allowed(
        "proxy_pass_normalized",
        r"^proxy_pass http://twinstack_(async|sync)/(ws/)?;",
        "Deliberate: the pools get the URI nginx routed and filtered on (decoded, dot segments "
        "resolved), so an encoding cannot reach /metrics past its 404 or differ from what nginx saw.",
    ),
    Allowed(
        "proxy_pass_normalized",
        r"^proxy_pass http://bench_\w+/;",
        "The lab's loopback-only measuring server strips its prefix the way twinstack's routes do.",
        runners=frozenset({"lab"}),
    ),
)


def compose_nginx_version() -> str:
    """The upstream version of the pinned image: version-aware checks (nginx_cves) use it.
    Native mode's nginx is the distribution's, patched in place without a version change, so
    it gets none (gixy then keeps the CVE check silent, as it does by default)."""
    return ".".join(map(str, image_nginx_version()))


def render(runner: str, prefix: Path) -> tuple[Path, dict[str, str]]:
    """The runner's nginx prefix, rendered as the runner renders it; returns it and the env."""
    if runner in COMPOSE_RUNNERS:
        # compose's nginx environment, as tests/docker/test_compose.py reads it
        env = environment("nginx", tls=runner == "compose-tls")
    else:
        env = StackSettings(run_dir=prefix.parent / "run", http_port=18080, tls=runner == "native-tls").environment()
        if runner == "lab":  # the lab's nginx (python -m native render-nginx): twinstack's server plus the lab's own
            env.update(
                TWINSTACK_BENCH_CEILING_PORT="18081",
                TWINSTACK_BENCH_PROXY_PORT="18082",
                TWINSTACK_BENCH_GTHREAD_UPSTREAM="127.0.0.1:18083",
            )
    nginx_config.render(env, prefix)
    if runner == "compose-tls":  # the image renders the override's templates/tls/ into conf.d/tls/
        tls = nginx_config.render_template((ROOT / "nginx/tls/twinstack-tls.conf.template").read_text(), env)
        (prefix / "conf.d" / "tls").mkdir()
        (prefix / "conf.d" / "tls" / "twinstack-tls.conf").write_text(tls)
    if runner == "lab":
        bench = nginx_config.render_template((ROOT / "bench/nginx-bench.conf.template").read_text(), env)
        (prefix / "conf.d" / "bench.conf").write_text(bench)
    return prefix, env


def audit(conf: Path, skips: list[str], nginx_version: str | None) -> list[Finding]:
    """gixy's own audit (what its CLI runs), every check with its default options."""
    config = Config(skips=skips, load_default_vars=True, nginx_version=nginx_version)
    for plugin_cls in PluginsManager().plugins_classes:
        config.set_for(plugin_cls.__name__, copy.deepcopy(plugin_cls.options))
    manager = Manager(config=config)
    with conf.open("rb") as data:
        manager.audit(str(conf), data)
    findings = []
    for plugin in manager.results:
        for issue in plugin.issues:
            first, last = (issue.directives[0], issue.directives[-1]) if issue.directives else (None, None)
            directive = str(first).splitlines()[0] if first else ""
            where = "?"
            if last is not None:
                chain = [*reversed(list(last.parents)), *([last] if last.is_block else [])]
                blocks = [f"{b.name} {' '.join(b.args)}".strip() for b in chain if b.name]
                line = f"{Path(last.file).relative_to(conf.parent)}:{last.line}" if last.file else "?"
                where = f"{' > '.join(blocks) or 'main'} ({line})"
            findings.append(
                Finding(plugin.name, issue.severity or plugin.severity, directive, issue.reason or "", where)
            )
    return findings


def run_gixy(runner: str, prefix: Path, env: dict[str, str]) -> list[Finding]:
    skips = ["origins"] if env["TWINSTACK_CORS_ORIGIN_REGEX"] == NO_ORIGIN else []
    version = compose_nginx_version() if runner in COMPOSE_RUNNERS else None
    return audit(prefix / "nginx.conf", skips, version)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict[str, str]]]]:
    # gixy reads the configuration only: no copy of the web root (native mode as root publishes
    # one under /run, and compose's path would be the host's /usr/share/twinstack).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nginx_config, "publish", lambda web_root, temp_dir: None)
        yield {runner: render(runner, tmp_path_factory.mktemp(runner) / "nginx") for runner in RUNNERS}


@pytest.fixture(scope="module")
def findings(rendered) -> dict[str, list[Finding]]:
    return {runner: run_gixy(runner, prefix, env) for runner, (prefix, env) in rendered.items()}


@pytest.mark.parametrize("runner", RUNNERS)
def test_gixy_finds_nothing_unexplained(findings, runner: str):
    unexplained = [f for f in findings[runner] if not any(a.matches(runner, f) for a in ALLOWED)]
    assert not unexplained, f"gixy on the {runner} runner's nginx.conf:\n" + "\n".join(map(str, unexplained))


def test_every_allowed_finding_still_occurs(findings):
    present = [a for a in ALLOWED if a.runners & set(RUNNERS)]  # the lab's, where the project has it
    stale = [a for a in present if not any(a.matches(r, f) for r in RUNNERS for f in findings[r])]
    assert not stale, stale


def test_the_runners_render_what_they_claim(rendered):
    """The audits saw the right files: the TLS server only where HTTPS is on, the lab's own
    servers only in the lab's, the compose upstream names only in Compose."""
    for runner, (prefix, _env) in rendered.items():
        tls = (prefix / "conf.d" / "tls" / "twinstack-tls.conf").exists()
        assert tls == (runner in TLS_RUNNERS), runner
        assert (prefix / "conf.d" / "bench.conf").exists() == (runner == "lab"), runner
        for half in deployed():
            upstream = (prefix / "conf.d" / f"{half.prefix}.conf").read_text()
            compose_name = f"server {half.program}:" in upstream
            assert compose_name == (runner in COMPOSE_RUNNERS), (runner, half)
        assert "${" not in "".join(p.read_text() for p in (prefix / "conf.d").rglob("*.conf")), runner


def test_gixy_reports_known_bad_directives(rendered, tmp_path: Path):
    """The harness is live: known-bad directives added to the public server are reported (an
    add_header that drops the server's security headers, the client's raw Host forwarded, a
    CORS regex that is not anchored)."""
    prefix = tmp_path / "nginx"
    shutil.copytree(rendered["compose"][0], prefix, symlinks=True)
    server = prefix / "conf.d" / "twinstack.conf"
    bad = (
        "    location /canary/ {\n"
        "        add_header X-Canary 1;\n"
        "        proxy_set_header Host $http_host;\n"
        f"        proxy_pass http://twinstack_{deployed()[0].prefix};\n"
        "    }\n"
        "    include snippets/routes.conf;"
    )
    server.write_text(server.read_text().replace("    include snippets/routes.conf;", bad, 1))
    cors = prefix / "conf.d" / "cors.conf"
    text, replaced = re.subn(r'"~\^https://[^"]+"', r'"~app\\.example\\.com"', cors.read_text(), count=1)
    assert replaced == 1
    cors.write_text(text)
    plugins = {f.plugin for f in audit(prefix / "nginx.conf", [], None)}
    assert {"add_header_redefinition", "host_spoofing", "origins"} <= plugins, plugins
