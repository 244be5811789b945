"""What every command needs: the settings in force and the services built from them.

Commands reach the record only through the service layer (the same path as the REST API), built
by the composition root; errors become a message and an exit status here, once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from medarchive.errors import FhirError
from medarchive.settings import Settings, load_settings

console = Console(stderr=True)


@dataclass
class CliState:
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **more: Any) -> Settings:
        try:
            return load_settings({**self.overrides, **more}, config_file=self.config)
        except (ValueError, OSError) as exc:
            fail(f"settings: {exc}")
            raise  # unreachable: fail() exits


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def reported() -> Iterator[None]:
    """Render FhirError, OS errors and bad values as a message and exit status 1."""
    try:
        yield
    except (FhirError, OSError, ValueError) as exc:
        fail(str(exc))


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def echo_json(data: Any) -> None:
    import orjson
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
