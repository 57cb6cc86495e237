"""The SDK version, in its own module so the transport can send it without importing the package root."""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "0.1.0"
