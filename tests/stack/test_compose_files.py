"""compose/: the docker compose files validate against the Compose Specification schema, every oglog service
is configured with variables `oglog serve` accepts (a StackConfig is built for each), images, commands, ports
and health checks agree with the Dockerfile and HAProxy, and the Dockerfile builds from what it is sent.

There is no Docker engine here, so everything is checked statically; tests/stack/test_compose_topology.py runs
the same topology as local processes."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from oglogstream.stack.config import ROLES, StackConfig
from oglogstream.stack.server import cli

from reference_stack.server.stop_deadline import stop_deadline
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
DEV = COMPOSE / "docker-compose.yml"
PROD = COMPOSE / "docker-compose.prod.yml"
DOCKERFILE = COMPOSE / "Dockerfile"
HAPROXY_CFG = COMPOSE / "haproxy" / "haproxy.cfg"
#: What the operator must provide for the prod file (it refuses to interpolate without a password).
PROD_ENV = {"CLICKHOUSE_PASSWORD": "s3cret", "OGLOG_API_KEYS": "ingest:" + "k" * 32 + ",query:" + "q" * 32}
#: Every variable `oglog serve` reads. StackConfig.from_env ignores others, so a misspelt one would be silent.
SERVE_VARIABLES = {name for name in cli._ENV_NAMES.values() if name != "roles"} | {"CLICKHOUSE_URL"}
IMAGE_BUILD = {"context": "..", "dockerfile": "compose/Dockerfile"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (`$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?error}`, `${VAR?error}`) applied to every string of a loaded compose document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if not missing:
            return str(current)
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"required variable {name} is not set: {arg}")
        return ""

    return _VARIABLE.sub(substitute, value)


def load_compose(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as docker compose sees it: YAML (anchors, merge keys), variables interpolated."""
    require("yaml")
    import yaml

    return interpolate(yaml.safe_load(path.read_text()), env or {})  # type: ignore[no-any-return]


def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema vendored in the check-jsonschema wheel (from the compose-spec
    repository, via SchemaStore): validation needs no network."""
    require("check_jsonschema")
    resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(resource.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def oglog_services(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from compose/Dockerfile (the oglog roles)."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction of compose/Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


@pytest.mark.parametrize("path", [DEV, PROD], ids=["dev", "prod"])
def test_compose_files_validate_against_the_compose_spec(path: Path) -> None:
    """Both compose files are valid Compose Specification documents, before and after interpolation."""
    require("jsonschema")
    import jsonschema
    import yaml

    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    for doc in (yaml.safe_load(path.read_text()), load_compose(path, PROD_ENV)):
        errors = sorted(validator_class(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_validation_catches_a_misspelt_key() -> None:
    """The schema check is real: a service with `helthcheck` (a typo) is rejected."""
    require("jsonschema")
    import jsonschema

    schema = compose_schema()
    doc = load_compose(DEV)
    doc["services"]["ingest"]["helthcheck"] = doc["services"]["ingest"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        jsonschema.validators.validator_for(schema)(schema).validate(doc)


def test_prod_file_requires_a_clickhouse_password() -> None:
    """The prod file refuses to start without CLICKHOUSE_PASSWORD instead of shipping a default password."""
    with pytest.raises(KeyError, match="CLICKHOUSE_PASSWORD"):
        load_compose(PROD, {})
    assert "s3cret" in environment(load_compose(PROD, PROD_ENV)["services"]["process"])["CLICKHOUSE_DSN"]


@pytest.mark.parametrize("path", [DEV, PROD], ids=["dev", "prod"])
def test_every_service_env_builds_a_stack_config(path: Path) -> None:
    """Each oglog service's environment and command go through `oglog serve`'s own parsing
    (cli.config_from_env -> StackConfig.from_env) and give the config the deployment intends."""
    doc = load_compose(path, PROD_ENV)
    services = oglog_services(doc)
    assert services, "no service is built from compose/Dockerfile"
    for name, svc in services.items():
        env = environment(svc)
        unknown = set(env) - SERVE_VARIABLES
        assert not unknown, f"{name}: variables `oglog serve` does not read: {sorted(unknown)}"
        roles = tuple(svc["command"])
        args = cli.build_parser().parse_args(["serve", *roles])  # the image's ENTRYPOINT is `oglog serve`
        config = cli.config_from_env(args.roles, env)
        assert isinstance(config, StackConfig)
        assert config.roles == roles
        assert config.host == "0.0.0.0", f"{name}: must listen on every interface in a container"
        nats = urlsplit(config.nats_url)
        assert (nats.hostname, nats.port) == ("nats", 4222) and "nats" in doc["services"]
        if "process" in roles or "query" in roles:
            dsn = urlsplit(config.clickhouse_dsn)
            assert dsn.scheme == "http" and dsn.hostname == "clickhouse", (
                f"{name}: split roles need a ClickHouse server, not chDB ({config.clickhouse_dsn})"
            )
            clickhouse_env = environment(doc["services"]["clickhouse"])
            assert dsn.username == clickhouse_env["CLICKHOUSE_USER"]
            assert dsn.password == clickhouse_env["CLICKHOUSE_PASSWORD"]
            assert dsn.path == "/" + clickhouse_env["CLICKHOUSE_DB"]
        # Auth: required with the operator's keys in prod; explicitly off (insecure) in dev.
        assert config.auth_enabled == (path == PROD), name


def test_dev_runs_one_of_each_role_and_prod_three() -> None:
    """Dev: one service per role, its port published; prod: 3 replicas of each role behind HAProxy only."""
    dev = oglog_services(load_compose(DEV))
    assert sorted(tuple(svc["command"]) for svc in dev.values()) == sorted((role,) for role in ROLES)
    assert all(svc.get("deploy", {}).get("replicas", 1) == 1 for svc in dev.values())
    assert dev["ingest"]["ports"] == ["127.0.0.1:8080:8080"]
    assert dev["query"]["ports"] == ["127.0.0.1:8081:8080"]

    prod_doc = load_compose(PROD, PROD_ENV)
    prod = oglog_services(prod_doc)
    assert sorted(tuple(svc["command"]) for svc in prod.values()) == sorted((role,) for role in ROLES)
    for name, svc in prod.items():
        assert svc["deploy"]["replicas"] == 3, name
        assert "ports" not in svc, f"{name}: replicas are reached through HAProxy, not published ports"
    published = {name for name, svc in prod_doc["services"].items() if svc.get("ports")}
    assert published == {"haproxy"}
    assert prod_doc["services"]["haproxy"]["ports"] == ["80:8080", "8404:8404"]


@pytest.mark.parametrize("path", [DEV, PROD], ids=["dev", "prod"])
def test_services_have_health_checks_and_restart_policies(path: Path) -> None:
    """Every service restarts unless stopped and has a health check; oglog services wait for healthy
    dependencies and get longer than SHUTDOWN_TIMEOUT to stop."""
    doc = load_compose(path, PROD_ENV)
    for name, svc in doc["services"].items():
        assert svc.get("restart") == "unless-stopped", name
        assert svc["healthcheck"]["test"][0] == "CMD", name
    for name, svc in oglog_services(doc).items():
        assert svc["healthcheck"]["test"] == ["CMD", "oglog-healthcheck"], name
        assert {dep: cond["condition"] for dep, cond in svc["depends_on"].items()} == {
            "nats": "service_healthy",
            "clickhouse": "service_healthy",
        }
        config = cli.config_from_env(tuple(svc["command"]), environment(svc))
        grace = float(svc["stop_grace_period"].rstrip("s"))
        # Above the stack's own stop deadline: its line saying why it gave up comes before Docker's kill.
        deadline = stop_deadline(config.shutdown_timeout)
        assert grace > deadline, f"{name}: Docker would kill a processor still draining"
    assert "--jetstream" in doc["services"]["nats"]["command"]


def test_prod_services_have_resource_limits() -> None:
    """Every prod service has CPU and memory limits."""
    for name, svc in load_compose(PROD, PROD_ENV)["services"].items():
        limits = svc["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory"), name


@pytest.mark.parametrize("path", [DEV, PROD], ids=["dev", "prod"])
def test_oglog_services_share_one_image_built_from_the_dockerfile(path: Path) -> None:
    """All roles run one image, built from compose/Dockerfile with the repository as context."""
    services = oglog_services(load_compose(path, PROD_ENV))
    assert len({svc["image"] for svc in services.values()}) == 1
    for name, svc in services.items():
        assert svc["build"] == IMAGE_BUILD, name
        assert (path.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_haproxy_servers_are_the_prod_role_services() -> None:
    """Each HAProxy backend's servers are the prod service running that role, on its HTTP_PORT; the config
    HAProxy mounts is compose/haproxy/haproxy.cfg."""
    doc = load_compose(PROD, PROD_ENV)
    template = re.compile(r"^\s*server-template\s+(\S+)\s+\d+\s+(\S+):(\d+)\s", re.M)
    templates = template.findall(HAPROXY_CFG.read_text())
    assert {prefix for prefix, _, _ in templates} == {"ingest-", "query-"}
    for prefix, host, port in templates:
        svc = doc["services"][host]
        assert tuple(svc["command"]) == (prefix.rstrip("-"),)
        assert environment(svc)["HTTP_PORT"] == port
    haproxy = doc["services"]["haproxy"]
    source, target, mode = haproxy["volumes"][0].split(":")
    assert (PROD.parent / source).resolve() == HAPROXY_CFG and mode == "ro"
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"  # where the official image reads its config
    assert "8080/lb/health" in " ".join(haproxy["healthcheck"]["test"])


def test_dockerfile_is_slim_non_root_and_serves_oglog() -> None:
    """python:3.11-slim, `pip install '.[stack]'`, a non-root user, `oglog serve` as the entrypoint and the
    health check script installed under the name the compose files call."""
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip install '.[stack]'" in runs
    user = [args for keyword, args in instructions if keyword == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    entrypoint = [json.loads(args) for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoint == [["oglog", "serve"]]
    # `oglog serve` reaches the stack's CLI through the client CLI's dispatch (sdk/oglogstream/cli).
    assert 'oglog = "oglogstream.cli:main"' in (ROOT / "pyproject.toml").read_text()
    from oglogstream.cli import SERVER_COMMANDS

    assert "serve" in SERVER_COMMANDS
    copies = [shlex.split(args) for keyword, args in instructions if keyword == "COPY"]
    assert ["compose/healthcheck.py", "/usr/local/bin/oglog-healthcheck"] in copies
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "HTTP_HOST=0.0.0.0" in env and "HTTP_PORT=8080" in env


def test_dockerfile_copies_everything_the_package_needs() -> None:
    """The COPY sources exist, cover pyproject's package-dir mapping and readme, and are not excluded by
    compose/Dockerfile.dockerignore (so `pip install .` in the image sees the whole package)."""
    pyproject = (ROOT / "pyproject.toml").read_text()  # regexes, not tomllib: the tests run on 3.10 too
    package_dirs = re.search(r"^package-dir\s*=\s*\{(.*)\}", pyproject, re.M)
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, re.M)
    assert package_dirs and readme
    needed = {"pyproject.toml", readme.group(1), *re.findall(r'=\s*"([^"]+)"', package_dirs.group(1))}
    sources = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY":
            sources.update(shlex.split(args)[:-1])
    missing = {path for path in needed if not any(path == s or path.startswith(s + "/") for s in sources)}
    assert not missing, f"not copied into the image: {sorted(missing)}"
    for source in sources:
        assert (ROOT / source).exists(), source

    patterns = [
        line.strip()
        for line in (COMPOSE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the ignore file is an allow-list"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert sources <= allowed, f"copied but excluded from the build context: {sorted(sources - allowed)}"


def test_prod_file_requires_api_keys() -> None:
    """The prod file refuses to start without OGLOG_API_KEYS instead of running without authentication."""
    with pytest.raises(KeyError, match="OGLOG_API_KEYS"):
        load_compose(PROD, {"CLICKHOUSE_PASSWORD": "s3cret"})
