"""Framework integrations for oglogstream: `oglogstream.integrations.django.RequestLogMiddleware` and
`oglogstream.integrations.flask.OgLog` (docs/integrations.md).
Importing this package imports neither framework.
"""

from __future__ import annotations

from ._common import ACCESS_LOGGER_NAME, DEFAULT_REQUEST_ID_HEADER

__all__ = ["ACCESS_LOGGER_NAME", "DEFAULT_REQUEST_ID_HEADER"]
