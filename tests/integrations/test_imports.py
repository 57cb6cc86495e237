"""Packaging: the integrations package imports without either framework; each module needs only its own."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = "import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\nimport {module}\nprint('ok')\n"


def _run(module: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    code = BLOCKED.format(blocked=blocked, module=module)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_package_imports_without_any_framework() -> None:
    """`import oglogstream.integrations` works with Django, Flask, Werkzeug and asgiref all unavailable."""
    out = _run("oglogstream.integrations", ("django", "flask", "werkzeug", "asgiref"))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_each_integration_needs_only_its_framework() -> None:
    """The Django module imports without Flask, the Flask module without Django."""
    assert _run("oglogstream.integrations.django", ("flask", "werkzeug")).returncode == 0
    assert _run("oglogstream.integrations.flask", ("django",)).returncode == 0
