"""Developer sessions: `nox -s tests lint typecheck bench` (each in its own virtualenv)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, as CI runs it."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the SDK."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "sdk/oglogstream")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark in one run; numbers are ratios against baselines measured in the same run."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "benchmarks", *session.posargs)
