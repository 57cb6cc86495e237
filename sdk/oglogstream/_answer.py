"""Reading an HTTP answer with bounded memory: the raw bytes are decoded here (gzip, deflate, identity), at
most `limit` + 1 decoded bytes are kept (MAX_ANSWER_BYTES for the SDK's answers to batches; the CLI passes
its own caps), and reading stops there.

httpx's `client.post()` reads and decodes a whole answer before we see it: a 407 KB gzip answer inflating
to 400 MiB took the process to 1.29 GB of RSS. httpx's own decoders also inflate each network chunk
whole (a 64 KB chunk of a bomb is ~64 MB), so the raw stream is decoded here with a bound per step.
"""

from __future__ import annotations

import zlib

import httpx

__all__ = ["ACCEPT_ENCODING", "MAX_ANSWER_BYTES", "AnswerReader"]

#: Decoded bytes of an answer read at most (one more is kept, so a longer answer is recognised as such). A
#: 2xx answer past it is not parsed (the batch counts as accepted in full); an error answer's text is
#: only quoted (its first 300 characters) anyway.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: The encodings `AnswerReader` decodes, announced to the server (httpx would also announce br/zstd when
#: their packages are installed).
ACCEPT_ENCODING = "gzip, deflate"


class AnswerReader:
    """Collects one answer's body: `feed(raw)` per network chunk until it returns False (past `limit`
    decoded bytes, a body that does not decode, an encoding we do not decode: `over` / `unreadable` say
    which), then `body()`, or `response(answer)` for `_transport.classify`. `limit` (bytes, default
    MAX_ANSWER_BYTES) must be positive."""

    __slots__ = ("_decoder", "_limit", "_parts", "_size", "_unreadable")

    def __init__(self, content_encoding: str, limit: int = MAX_ANSWER_BYTES) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")
        encoding = content_encoding.strip().lower()
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._unreadable = False
        self._decoder: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            self._unreadable = True

    @property
    def over(self) -> bool:
        """More than `limit` decoded bytes came (only `limit` + 1 were kept)."""
        return self._size > self._limit

    @property
    def unreadable(self) -> bool:
        """The body does not decode as its Content-Encoding says, or that encoding is not one we decode."""
        return self._unreadable

    def feed(self, raw: bytes) -> bool:
        """Take one raw chunk; False once nothing more is wanted (`over`, `unreadable`). Never raises."""
        if self._unreadable:
            return False
        want = self._limit + 1 - self._size
        if self._decoder is None:
            data = raw[:want]
        else:
            try:
                data = self._decoder.decompress(raw, want)
            except zlib.error:
                self._unreadable = True
                return False
        self._parts.append(data)
        self._size += len(data)
        return self._size <= self._limit

    def body(self) -> bytes:
        """The decoded body: empty when unreadable, `limit` + 1 bytes when the answer was longer."""
        return b"" if self._unreadable else b"".join(self._parts)

    def response(self, answer: httpx.Response) -> httpx.Response:
        """A response with `answer`'s status and Retry-After and `body()`."""
        headers = {}
        retry_after = answer.headers.get("Retry-After")
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return httpx.Response(answer.status_code, headers=headers, content=self.body())
