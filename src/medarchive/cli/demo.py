"""``medarchive demo --patients N``: load realistic synthetic hospital data."""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Annotated

import typer

from medarchive.cli.context import console, reported, state
from medarchive.cli.progress import progress_bar
from medarchive.errors import AlreadyApplied


def demo(
    ctx: typer.Context,
    patients: Annotated[int, typer.Option(help="How many patients to generate.", min=1)] = 100,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")
                    ] = 0,
    if_empty: Annotated[bool, typer.Option(
        help="Do nothing when the database already holds patients.")] = False,
) -> None:
    """Generate N synthetic patients with their records and store them through the API path."""
    from medarchive.app import build_services
    from medarchive.demo import generate, reference_bundle
    from medarchive.fhir.search.query import SearchQuery
    from medarchive.web.ui.questionnaire import INSTALL_KEY, install_bundle

    settings = state(ctx).settings()
    if settings.auth == "on":  # security is on by default: make logins to try it with
        from medarchive.cli.users import demo_logins
        with reported():
            logins = demo_logins(settings.database_url, settings.public_base())
        if logins:
            typer.echo("demo logins (shown once):\n" + "\n".join(logins), err=True)
    with reported():
        services = build_services(settings)
        try:
            with suppress(AlreadyApplied):  # the web UI's forms (docs/ui.md "Questionnaires")
                services.submit(install_bundle(), INSTALL_KEY)
            if if_empty and services.store.count(SearchQuery("Patient", count=1)):
                console.print("database already has patients; not loading demo data")
                return
            started = time.perf_counter()
            resources = 0
            with suppress(AlreadyApplied):  # loaded by an earlier run
                services.submit(reference_bundle(seed), f"demo:{seed}:reference")
            with progress_bar() as bar:
                task = bar.add_task("demo patients", total=patients, rate="")
                for number, bundle in enumerate(generate(patients, seed=seed)):
                    with suppress(AlreadyApplied):
                        services.submit(bundle, f"demo:{seed}:{number}")
                    resources += len(bundle["entry"])
                    rate = resources / max(time.perf_counter() - started, 1e-6)
                    bar.update(task, advance=1, rate=f"{rate:,.0f} res/s")
        finally:
            services.close()
    console.print(f"loaded {patients} patients, {resources} resources "
                  f"in {time.perf_counter() - started:.1f} s")
