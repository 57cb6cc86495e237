"""Reading an HTTP answer with bounded memory: the raw bytes are decoded here (what httpx decodes without
extra packages: identity, gzip, x-gzip, deflate as zlib or raw, and comma-separated lists of these, undone
last first), at most `limit` + 1 decoded bytes are kept (MAX_ANSWER_BYTES for the SDK's answers to batches;
the CLI passes its own caps), and reading stops there, or where the compressed stream ends.

httpx's `client.post()` reads and decodes a whole answer before we see it: a 407 KB gzip answer inflating
to 400 MiB took the process to 1.29 GB of RSS. httpx's own decoders also inflate each network chunk
whole (a 64 KB chunk of a bomb is ~64 MB), so the raw stream is decoded here with a bound per step.
"""

from __future__ import annotations

import zlib

import httpx

__all__ = ["ACCEPT_ENCODING", "MAX_ANSWER_BYTES", "MAX_GZIP_MEMBERS", "AnswerReader"]

#: Decoded bytes of an answer read at most (one more is kept, so a longer answer is recognised as such). A
#: 2xx answer past it is not parsed (the batch counts as accepted in full, announced on stderr); an error
#: answer's text is only quoted (its first 300 characters) anyway.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: The encodings `AnswerReader` decodes, announced to the server (httpx would also announce br/zstd when
#: their packages are installed).
ACCEPT_ENCODING = "gzip, deflate"
#: Gzip members (RFC 1952 allows several, concatenated) one layer of an answer may have: endless empty
#: members decode to nothing, so this, not the decoded bound, ends them (the answer is then unreadable).
MAX_GZIP_MEMBERS = 64
#: Decoded bytes one layer hands to the next per step (a nested bomb never inflates more at once).
_STEP = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class _Unreadable(Exception):
    """The body does not decode (its reason is the message)."""


class _Layer:
    """One encoding to undo: `push(data)` its encoded bytes, `pull(n)` up to n decoded ones. `ended`: its
    stream is complete (a zlib/raw deflate stream's end, or a gzip member's end with no next member begun);
    `trailing`: bytes came after that end (ignored, as httpx does)."""

    __slots__ = ("_decoder", "_first", "_name", "_pending", "ended", "members", "trailing")

    def __init__(self, name: str) -> None:
        self._name = name
        self._pending = b""
        self._decoder: zlib._Decompress | None = None
        self._first = True  # deflate: zlib is tried first, raw deflate on its first error (as httpx)
        self.members = 0
        self.ended = False
        self.trailing = False

    def push(self, data: bytes) -> None:
        if self.ended and self._decoder is None and self._name != "gzip":
            self.trailing = self.trailing or bool(data)
            return
        self._pending += data

    def pull(self, n: int) -> bytes:
        """Up to `n` decoded bytes (b"" when it needs more input or its stream ended); _Unreadable."""
        while not self.trailing:
            if self._decoder is None and not self._begin():
                return b""
            assert self._decoder is not None
            if not self._pending:
                return b""
            data, self._pending = self._pending, b""
            try:
                out = self._decoder.decompress(data, n)
            except zlib.error as exc:
                if not (self._name == "deflate" and self._first):
                    raise _Unreadable(f"the body does not decode as {self._name!r}: {exc}") from None
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                self._first = False
                self._pending = data
                continue
            self._first = False
            self._pending = self._decoder.unconsumed_tail
            if self._decoder.eof:
                self._pending = self._decoder.unused_data + self._pending
                self._decoder = None
                self.ended = True
                if self._name != "gzip":
                    self.trailing = bool(self._pending)
                    self._pending = b""
            if out:
                return out
        return b""

    def _begin(self) -> bool:
        """A decoder for the next stream/member, if one starts here; False: wait, or the layer is done."""
        if self.members == 0:
            wbits = 16 + zlib.MAX_WBITS if self._name == "gzip" else zlib.MAX_WBITS
        elif self._name != "gzip":
            return False
        else:  # after a gzip member: another one, or bytes after the end
            if len(self._pending) < 2:
                if self._pending and self._pending != _GZIP_MAGIC[:1]:
                    self.trailing = True
                return False
            if not self._pending.startswith(_GZIP_MAGIC):
                self.trailing = True
                return False
            if self.members >= MAX_GZIP_MEMBERS:
                raise _Unreadable(f"more than {MAX_GZIP_MEMBERS} gzip members")
            wbits = 16 + zlib.MAX_WBITS
            self.ended = False
        self._decoder = zlib.decompressobj(wbits)
        self.members += 1
        return True


class AnswerReader:
    """Collects one answer's body: `feed(raw)` per network chunk until it returns False (past `limit`
    decoded bytes, a body that does not decode, an encoding we do not decode, bytes after the end of the
    compressed stream), then `body()`, or `response(answer)` for `_transport.classify`. After the last
    `feed`, `over` / `unreadable` / `problem` say what was wrong, if anything. `limit` (bytes, default
    MAX_ANSWER_BYTES) must be positive; ValueError otherwise."""

    __slots__ = ("_layers", "_limit", "_parts", "_problem", "_raw", "_size")

    def __init__(self, content_encoding: str, limit: int = MAX_ANSWER_BYTES) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._problem: str | None = None
        self._raw = False  # any raw byte came (an empty body is complete whatever its encoding, as in httpx)
        names = [name.strip().lower() for name in content_encoding.split(",")]
        names = ["gzip" if name == "x-gzip" else name for name in names if name not in ("", "identity")]
        unknown = [name for name in names if name not in ("gzip", "deflate")]
        if unknown:
            self._problem = f"Content-Encoding {content_encoding.strip()!r} is not one we decode"
        #: Undone last first: the encoding listed last was applied last (RFC 9110 8.4).
        self._layers = [] if unknown else [_Layer(name) for name in reversed(names)]

    @property
    def over(self) -> bool:
        """More than `limit` decoded bytes came (only `limit` + 1 were kept)."""
        return self._size > self._limit

    @property
    def unreadable(self) -> bool:
        """The body does not decode as its Content-Encoding says (a truncated stream included, once every
        chunk was fed), or that encoding is not one we decode."""
        return self.problem is not None and not self.over

    @property
    def problem(self) -> str | None:
        """Why the body is not the whole answer (after the last `feed`), or None: an encoding we do not
        decode, a body that does not decode, one that ends before its compressed stream, one past `limit`."""
        if self._problem is not None:
            return self._problem
        if self.over:
            return f"longer than {self._limit} decoded bytes"
        if self._raw and not all(layer.ended for layer in self._layers):
            return "the body ends before its compressed stream does (truncated)"
        return None

    def feed(self, raw: bytes) -> bool:
        """Take one raw chunk; False once nothing more is wanted. Never raises."""
        if self._problem is not None or self.over:
            return False
        if not self._layers:
            self._keep(raw[: self._limit + 1 - self._size])
            return not self.over
        self._raw = self._raw or bool(raw)
        self._layers[0].push(raw)
        try:
            while not self.over:
                data = self._pull(len(self._layers) - 1, self._limit + 1 - self._size)
                if not data:
                    break
                self._keep(data)
        except _Unreadable as exc:
            self._problem = str(exc)
            return False
        return not (self.over or any(layer.trailing for layer in self._layers))

    def _keep(self, data: bytes) -> None:
        if data:
            self._parts.append(data)
            self._size += len(data)

    def _pull(self, index: int, n: int) -> bytes:
        """Up to `n` bytes decoded through layers 0..index, asking the layer below for more as needed."""
        layer = self._layers[index]
        while True:
            out = layer.pull(n)
            if out or index == 0 or layer.trailing:
                return out
            more = self._pull(index - 1, _STEP)
            if not more:
                return b""
            layer.push(more)

    def body(self) -> bytes:
        """The decoded body (its first `limit` + 1 bytes when longer; what decoded of a body that stops
        decoding; empty for an encoding we do not decode)."""
        return b"".join(self._parts)

    def response(self, answer: httpx.Response) -> httpx.Response:
        """A response with `answer`'s status, Retry-After and Content-Type (whether a 4xx through a proxy is
        the server's problem+json, `_transport.classify`) and `body()`."""
        headers = {}
        for name in ("Retry-After", "Content-Type"):
            value = answer.headers.get(name)
            if value is not None:
                headers[name] = value
        return httpx.Response(answer.status_code, headers=headers, content=self.body())
