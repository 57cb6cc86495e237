"""Construction: env fallbacks, validation with clear errors, dictConfig, public surface."""

from __future__ import annotations

import logging
import logging.config
import subprocess
import sys

import oglogstream
import pytest
from oglogstream import OgLogHandler


def test_public_surface() -> None:
    """The package exports the handler, the processor, the context API, the stats type and a version."""
    assert set(oglogstream.__all__) >= {
        "OgLogHandler",
        "OgLogProcessor",
        "Stats",
        "DROP_REASONS",
        "__version__",
        "bind",
        "bound",
        "unbind",
        "clear_context",
        "get_context",
    }
    assert all(not name.startswith("_") or name == "__version__" for name in oglogstream.__all__)
    assert oglogstream.__version__


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """url, service and api_key come from OGLOG_URL, OGLOG_SERVICE and OGLOG_API_KEY when not passed."""
    monkeypatch.setenv("OGLOG_URL", "http://logs.example:8080")
    monkeypatch.setenv("OGLOG_SERVICE", "from-env")
    monkeypatch.setenv("OGLOG_API_KEY", "k1")
    handler = OgLogHandler()
    try:
        assert (handler.url, handler.service) == ("http://logs.example:8080", "from-env")
        assert handler._pipeline.settings.api_key == "k1"
    finally:
        handler.close(0)


def test_arguments_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit arguments take precedence over the environment."""
    monkeypatch.setenv("OGLOG_URL", "http://env:1")
    monkeypatch.setenv("OGLOG_SERVICE", "env")
    handler = OgLogHandler("http://arg:2", "arg")
    try:
        assert (handler.url, handler.service) == ("http://arg:2", "arg")
    finally:
        handler.close(0)


@pytest.mark.parametrize("missing", ["url", "service"])
def test_missing_url_or_service_is_a_clear_error(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without url/service (argument or env) construction fails naming the setting and the env var."""
    monkeypatch.delenv("OGLOG_URL", raising=False)
    monkeypatch.delenv("OGLOG_SERVICE", raising=False)
    kwargs = {"url": "http://x:1", "service": "s"}
    del kwargs[missing]
    with pytest.raises(ValueError, match=f"{missing} is required.*OGLOG_{missing.upper()}"):
        OgLogHandler(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x"}, "url must be an absolute http"),
        ({"url": "localhost:8080"}, "url must be an absolute http"),
        ({"url": "http://x:1/?q=1"}, "must not have a query"),
        ({"service": "s" * 101}, "at most 100 characters"),
        ({"service": "  "}, "service must not be empty"),
        ({"api_key": ""}, "api_key must be a non-empty"),
        ({"api_key": "a\nb"}, "api_key must be printable ASCII"),
        ({"batch_size": 0}, "batch_size must be between 1 and 10000"),
        ({"batch_size": 20_000}, "batch_size must be between"),
        ({"batch_size": True}, "batch_size must be an int"),
        ({"batch_bytes": 100 * 1024 * 1024}, "batch_bytes must be between"),
        ({"flush_interval": 0}, "flush_interval must be between"),
        ({"flush_interval": float("nan")}, "flush_interval must be between"),
        ({"flush_interval": "1"}, "flush_interval must be a number"),
        ({"max_buffer_records": 0}, "max_buffer_records must be between"),
        ({"max_buffer_bytes": 10}, "max_buffer_bytes must be between"),
        ({"overflow": "block"}, "overflow must be one of drop_oldest, drop_newest"),
        ({"connect_timeout": -1}, "connect_timeout must be between"),
        ({"read_timeout": 0}, "read_timeout must be between"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "backoff_max .* must be >= backoff_initial"),
        ({"shutdown_timeout": -0.1}, "shutdown_timeout must be between"),
        ({"verify": 3}, "verify must be a bool or a CA bundle path"),
        ({"verify": ""}, "verify must be True, False or a CA bundle path"),
        ({"verify": "/nonexistent/ca.pem"}, "verify '/nonexistent/ca.pem' is not a readable CA bundle"),
        ({"verify": __file__}, "verify .* is not a readable CA bundle"),  # exists, but is not PEM
        ({"url": "http://127.0.0.1:99999"}, "url must have a port between 1 and 65535"),
        ({"url": "http://127.0.0.1:0"}, "url must have a port between 1 and 65535"),
        ({"url": "http://127.0.0.1:/"}, "url must have a port between 1 and 65535"),
        ({"url": "http://exa mple"}, "url must not contain spaces or control characters"),
        ({"url": "http://host/a\tb"}, "url must not contain spaces or control characters"),
        ({"url": "http://exa<mple"}, "url must name a host"),
        ({"url": "http://[::zz]:80"}, "url has an invalid IPv6 address"),
        ({"url": "http://[::1:80"}, "url has an invalid IPv6 address"),
        ({"service": "a\nb"}, "service must not contain control characters"),
        ({"service": "a\x00b"}, "service must not contain control characters"),
        ({"service": "a\x85b"}, "service must not contain control characters"),
        ({"api_key": "a\tb"}, "api_key must be printable ASCII"),
    ],
)
def test_invalid_settings_are_rejected_clearly(kwargs: dict, message: str) -> None:
    """Each bad setting raises a ValueError that names it and says what is allowed."""
    full = {"url": "http://x:1", "service": "s", **kwargs}
    with pytest.raises(ValueError, match=message):
        OgLogHandler(**full)


def test_invalid_setting_registers_nothing() -> None:
    """A rejected construction leaves no half-built handler registered with logging."""
    before = len(logging._handlerList)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        OgLogHandler("http://x:1", "s", batch_size=0)
    assert len(logging._handlerList) == before  # type: ignore[attr-defined]


def test_dictconfig_with_keyword_settings() -> None:
    """dictConfig builds the handler from "class" + keyword args, including level and settings."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "oglog": {
                "class": "oglogstream.OgLogHandler",
                "level": "INFO",
                "url": "http://127.0.0.1:9",
                "service": "configured",
                "batch_size": 123,
                "overflow": "drop_newest",
            }
        },
        "loggers": {"sdktest.dictconfig": {"handlers": ["oglog"], "level": "DEBUG", "propagate": False}},
    }
    logging.config.dictConfig(config)
    logger = logging.getLogger("sdktest.dictconfig")
    (handler,) = logger.handlers
    try:
        assert isinstance(handler, OgLogHandler)
        assert handler.level == logging.INFO and handler.service == "configured"
        assert handler._pipeline.settings.batch_size == 123
    finally:
        logger.removeHandler(handler)
        handler.close(0)


def test_import_does_not_need_structlog_or_stack_extras() -> None:
    """`import oglogstream` works when structlog, aiohttp, nats and pydantic cannot be imported."""
    code = (
        "import sys\n"
        "for name in ('structlog', 'aiohttp', 'nats', 'pydantic', 'clickhouse_connect', 'chdb'):\n"
        "    sys.modules[name] = None\n"
        "import oglogstream\n"
        "p = oglogstream.OgLogProcessor('http://127.0.0.1:9', 's', shutdown_timeout=0.2)\n"
        "print(p({}, 'info', {'event': 'x'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "{'event': 'x'}" in result.stdout


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8080/logs", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/log", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/logs/", "http://127.0.0.1:8080"),
        ("https://logs.example/oglog/v1/logs", "https://logs.example/oglog"),
    ],
)
def test_an_endpoint_instead_of_the_base_url_is_refused(url: str, base: str) -> None:
    """An ingestion endpoint pasted as `url` would post to .../logs/logs and lose every record as a 404:
    construction refuses it and names the base URL to use instead."""
    with pytest.raises(ValueError, match="base URL") as excinfo:
        OgLogHandler(url, "svc")
    assert repr(base) in str(excinfo.value)


def test_a_base_url_with_a_path_prefix_is_kept() -> None:
    """A stack behind a path prefix (a reverse proxy) is a valid base URL."""
    handler = OgLogHandler("https://logs.example/oglog/", "svc")
    try:
        assert handler._pipeline.settings.endpoint == "https://logs.example/oglog/logs"
    finally:
        handler.close(0)


@pytest.mark.parametrize("driver", ["OgLogHandler", "OgLogProcessor", "AsyncOgLogClient"])
@pytest.mark.parametrize(("raw", "expected"), [("secret\n", "secret"), (" secret ", "secret"), ("  ", None)])
def test_the_api_key_from_the_environment_is_stripped_like_url_and_service(
    driver: str, raw: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OGLOG_API_KEY is stripped (a key file's newline); blank after that means no key, in every driver."""
    monkeypatch.setenv("OGLOG_API_KEY", raw)
    built = getattr(oglogstream, driver)("http://127.0.0.1:1", "s", drain_on_sigterm=False)
    try:
        settings = built.settings if driver == "AsyncOgLogClient" else built._pipeline.settings
        assert settings.api_key == expected
    finally:
        if driver != "AsyncOgLogClient":
            built.close(0.1)


def test_a_bad_verify_path_is_a_value_error_in_every_driver() -> None:
    """A CA bundle that cannot be loaded is refused at construction naming `verify` (was a raw
    FileNotFoundError from httpx's ssl setup), for the handler, the processor and the asyncio client."""
    for driver in (oglogstream.OgLogHandler, oglogstream.OgLogProcessor, oglogstream.AsyncOgLogClient):
        with pytest.raises(ValueError, match=r"^verify '/nonexistent/ca\.pem'"):
            driver("http://127.0.0.1:1", "s", verify="/nonexistent/ca.pem")


@pytest.mark.parametrize(
    "url", ["http://[::1]:8080", "https://logs.example.com", "http://münchen.example:80/base", "http://u:p@h:1"]
)
def test_valid_urls_are_kept(url: str) -> None:
    """IPv6 literals, names with non-ASCII letters (IDNA), a path prefix and userinfo stay accepted."""
    from oglogstream._settings import Settings

    assert Settings.build(url, "s", environ={}).url == url


def test_a_good_verify_path_is_accepted() -> None:
    """A real PEM bundle (certifi's, what httpx uses by default) is accepted as `verify=`."""
    import certifi
    from oglogstream._settings import Settings

    assert Settings.build("https://h", "s", verify=certifi.where(), environ={}).verify == certifi.where()
