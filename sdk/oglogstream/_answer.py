"""Reading the server's answer to one batch with bounded memory: the raw bytes are decoded here (gzip,
deflate, identity), at most MAX_ANSWER_BYTES + 1 decoded bytes are kept, and reading stops there.

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
    """Collects one answer's body: `feed(raw)` per network chunk until it returns False (the limit was
    passed or the encoding is not one we decode), then `response(answer)` for `_transport.classify`."""

    __slots__ = ("_decoder", "_parts", "_size", "_unreadable")

    def __init__(self, content_encoding: str) -> None:
        encoding = content_encoding.strip().lower()
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

    def feed(self, raw: bytes) -> bool:
        """Take one raw chunk; False once nothing more is wanted (past MAX_ANSWER_BYTES, a body that does
        not decode, an encoding we do not decode). Never raises."""
        if self._unreadable:
            return False
        want = MAX_ANSWER_BYTES + 1 - self._size
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
        return self._size <= MAX_ANSWER_BYTES

    def response(self, answer: httpx.Response) -> httpx.Response:
        """A response with `answer`'s status and Retry-After and the decoded body (empty when unreadable;
        MAX_ANSWER_BYTES + 1 bytes when the answer was longer)."""
        headers = {}
        retry_after = answer.headers.get("Retry-After")
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        body = b"" if self._unreadable else b"".join(self._parts)
        return httpx.Response(answer.status_code, headers=headers, content=body)
