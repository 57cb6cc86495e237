"""The shipped deployment files keep the access-control promises of docs/security.md: X-Forwarded-For is
trusted from HAProxy's own fixed address only (prod compose) or from nothing (k8s, until the operator names
the ingress controller), and the dev stack (auth off) answers only loopback names on loopback ports."""

from __future__ import annotations

import ipaddress

from .test_compose_files import DEV, PROD, PROD_ENV, environment, load_compose, oglog_services
from .test_compose_k8s import config_data

#: Wider than one proxy: trusting these lets any client inside them choose its own rate-limit bucket.
WIDE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def test_prod_trusts_only_haproxys_fixed_address() -> None:
    """Prod: OGLOG_TRUSTED_PROXIES is exactly the HAProxy container's pinned address, inside the project
    network's pinned subnet; no oglog service trusts a private range."""
    doc = load_compose(PROD, PROD_ENV)
    haproxy_address = doc["services"]["haproxy"]["networks"]["default"]["ipv4_address"]
    subnet = ipaddress.ip_network(doc["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(haproxy_address) in subnet
    for name, svc in oglog_services(doc).items():
        trusted = [ipaddress.ip_network(n) for n in environment(svc)["OGLOG_TRUSTED_PROXIES"].split(",")]
        assert trusted == [ipaddress.ip_network(f"{haproxy_address}/32")], name


def test_k8s_trusts_no_proxy_range_by_default() -> None:
    """k8s: no shipped X-Forwarded-For trust (the ingress controller's pods are the operator's to name)."""
    trusted = config_data().get("OGLOG_TRUSTED_PROXIES", "")
    assert not any(
        ipaddress.ip_network(n.strip()).supernet_of(w) or ipaddress.ip_network(n.strip()) == w
        for n in trusted.split(",") if n.strip() for w in WIDE
    )


def test_dev_without_auth_answers_only_loopback() -> None:
    """Dev (OGLOG_INSECURE): Host allowlist localhost, every published port bound to 127.0.0.1."""
    doc = load_compose(DEV)
    for name, svc in oglog_services(doc).items():
        env = environment(svc)
        assert env["OGLOG_INSECURE"] == "true" and env["OGLOG_ALLOWED_HOSTS"] == "localhost", name
    for name, svc in doc["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
