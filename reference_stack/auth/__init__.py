"""Access control for the stack's HTTP routes (docs/security.md): API keys with scopes (keys.py), rate limits
(ratelimit.py), Host/Origin checks and CORS (middleware.py), secret-free logs (redact.py), settings and when
auth is on (settings.py), and `startup.setup(app, config)`, called by `create_app` so every process it builds
(roles, ingest workers) enforces the same policy with the same keys. Nothing is imported here: config.py
imports settings.py, which must not pull in the rest."""
