"""A bound on request heads (request line plus headers), enforced before the app sees the request.

uvicorn's httptools protocol keeps no limit on a head: an unauthenticated client could send a
100 MB header and the server buffered all of it before answering 401. This protocol answers 431
and closes the connection once a head passes `MAX_HEAD_BYTES`. (h11, used where httptools is not
installed, has its own 16 KiB limit.)
"""

from __future__ import annotations

from typing import Any

MAX_HEAD_BYTES = 1024 * 1024  # bytes of request line and headers; generous, well above any real request


def http_protocol() -> Any:
    """The `http` option for `uvicorn.Config`: the bounded httptools protocol, else "auto" (h11)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn uses h11, which bounds heads itself
        return "auto"

    class BoundedHeadProtocol(HttpToolsProtocol):
        _in_head = False
        _head_bytes = 0

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head and not self.transport.is_closing():  # all of `data` went into an unfinished head
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse()

        def _refuse(self) -> None:
            msg = f"request head larger than {MAX_HEAD_BYTES} bytes"
            self.logger.warning("refused a request: %s", msg)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                + f"content-length: {len(msg)}\r\nconnection: close\r\n\r\n{msg}".encode("ascii")
            )
            self.transport.close()

    return BoundedHeadProtocol
