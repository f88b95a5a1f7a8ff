"""The ``capsim`` command line (typer + rich)."""

from __future__ import annotations

import typer

from capsim.cli.analytic import flops, memory_app
from capsim.cli.calibrate import calibrate
from capsim.cli.catalog import catalog
from capsim.cli.dashboard import dashboard
from capsim.cli.validate import validate

app = typer.Typer(name="capsim", help="Capacity planning and simulation for training and serving LLM chatbots.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command("catalog")(catalog)
app.add_typer(memory_app, name="memory")
app.command("flops")(flops)
app.command("validate")(validate)
app.command("calibrate")(calibrate)
app.command("dashboard")(dashboard)


def main() -> None:
    app()


__all__ = ["app", "main"]
