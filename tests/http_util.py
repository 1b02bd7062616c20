"""A local HTTP server for tests, run in a thread and always shut down."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import TypeVar

_Server = TypeVar("_Server", bound=http.server.ThreadingHTTPServer)


@contextlib.contextmanager
def serving(httpd: _Server) -> Iterator[_Server]:
    """Serves ``httpd`` (bound to 127.0.0.1) until the block ends; the thread must stop."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "test HTTP server thread did not stop"
