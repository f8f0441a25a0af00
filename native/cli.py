"""``python -m native COMMAND``: what the Makefile's native mode runs (``python -m native --help``
lists the commands). Each command is one line of ``COMMANDS``; the lifecycle is in
native/lifecycle.py, the commands for programs beside the stack in native/commands.py."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from . import commands, lifecycle, nginx_config
from .preflight import StackError
from .settings import ROOT, StackSettings


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[StackSettings, argparse.Namespace], int | None]  # the exit code; None is 0
    arguments: list[tuple[tuple[str, ...], dict]] = field(default_factory=list)


def _json(value: object) -> None:
    print(json.dumps(value, indent=1, sort_keys=True))


def _restart(settings: StackSettings) -> None:
    lifecycle.down(settings)
    lifecycle.up(settings)


COMMANDS = {
    "up": Command("Start the stack: checks, migrations, every program, ready.",
                  lambda s, a: lifecycle.up(s)),
    "down": Command("Stop the stack gracefully: nginx first, PostgreSQL last.",
                    lambda s, a: lifecycle.down(s)),
    "restart": Command("down, then up.", lambda s, a: _restart(s)),
    "reload": Command("New workers and nginx config, no request dropped.",
                      lambda s, a: lifecycle.reload(s)),
    "status": Command("Each program's state and readiness; exit 0 when all is up.",
                      lambda s, a: lifecycle.status(s)),
    "logs": Command("Follow every program's log file.", lambda s, a: lifecycle.logs(s)),
    "check": Command("nginx -t on the rendered configuration (a scratch copy).",
                     lambda s, a: lifecycle.check(s)),
    "delete-data": Command("Delete the stack's database; the stack must be down.",
                           lambda s, a: lifecycle.delete_data(s)),
    "env": Command("Print the environment the stack's programs get (JSON).",
                   lambda s, a: _json(s.environment())),
    "url": Command("Print the stack's public base URL (nginx).", lambda s, a: print(s.public_url())),
    "render-nginx": Command(
        "Render nginx into PREFIX, nginx -t, print how to run it.",
        lambda s, a: _json(commands.render_nginx(s, a.prefix, a.template)),
        [(("prefix",), {"type": Path}),
         (("--template",), {"type": Path, "action": "append", "default": [],
                            "help": "Also render this file into conf.d/ (repeatable)."})],
    ),
    "cluster": Command(
        "Make a PostgreSQL cluster in FOLDER as make up does (JSON).",
        lambda s, a: _json(commands.make_cluster(s, a.folder, a.port)),
        [(("folder",), {"type": Path}), (("--port",), {"type": int, "required": True})],
    ),
    "tls-cert": Command(
        "Make a self-signed localhost certificate in FOLDER.",
        lambda s, a: print(commands.tls_cert(a.folder)),
        [(("folder",), {"type": Path, "nargs": "?", "default": ROOT / "nginx" / "tls" / "certs"})],
    ),
}  # fmt: skip


def _env_prefix(model_name: str) -> str:
    """The variables' prefix of the settings class a validation error names (TWINSTACK_ASYNC_DB_
    for a pool's database settings)."""
    from pydantic_settings import BaseSettings

    classes = [BaseSettings]
    while classes:
        cls = classes.pop()
        if cls.__name__ == model_name:
            return cls.model_config.get("env_prefix") or "TWINSTACK_"
        classes.extend(cls.__subclasses__())
    return "TWINSTACK_"


def invalid_settings(exc: ValidationError) -> str:
    """A setting that does not validate, said as the variable that set it (no traceback)."""
    prefix = _env_prefix(exc.title)
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"{prefix}{field.upper()}" if field else "settings"
        problems.append(f"{name}={error.get('input')!s}: {error['msg']}")
    return "invalid setting: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    width = max(map(len, COMMANDS))
    parser = argparse.ArgumentParser(
        prog="python -m native",
        description="twinstack's stack as local processes under supervisord (make up without Docker).",
        # One line a command (argparse's own list wraps the longer names).
        epilog="commands:\n" + "\n".join(f"  {name:<{width}}  {c.help}" for name, c in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        parser_ = sub.add_parser(name, description=command.help)
        for flags, options in command.arguments:
            parser_.add_argument(*flags, **options)
    args = parser.parse_args(argv)
    try:
        settings = StackSettings()
        return COMMANDS[args.command].run(settings, args) or 0
    except (StackError, nginx_config.RenderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:  # a setting, or a pool's, read when it is first needed
        print(f"error: {invalid_settings(exc)}", file=sys.stderr)
        return 1
