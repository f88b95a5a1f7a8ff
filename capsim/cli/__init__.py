"""The ``capsim`` command line (typer + rich)."""

from __future__ import annotations

import typer

from capsim.cli.analytic import flops, memory_app
from capsim.cli.calibrate import calibrate
from capsim.cli.catalog import catalog
from capsim.cli.common import CapsimGroup
from capsim.cli.dashboard import dashboard
from capsim.cli.plan import plan_app
from capsim.cli.serve import serve
from capsim.cli.train import train
from capsim.cli.validate import validate
from capsim.cli.whatif import scale_app, whatif_app

app = typer.Typer(name="capsim", cls=CapsimGroup, help="Capacity planning and simulation for training and serving LLM chatbots.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command("catalog")(catalog)
app.add_typer(memory_app, name="memory")
app.command("flops")(flops)
app.command("validate")(validate)
app.command("calibrate")(calibrate)
app.command("dashboard")(dashboard)
app.command("train")(train)
app.add_typer(plan_app, name="plan")
app.add_typer(whatif_app, name="whatif")
app.add_typer(scale_app, name="scale")
app.command("serve")(serve)


def main() -> None:
    app()


__all__ = ["app", "main"]
