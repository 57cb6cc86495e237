"""HTTP side shared by every role: app composition (`create_app`), the problem boundary (RFC 9457),
OpenAPI, query-parameter errors, metrics and the app's shared resources."""
