"""The package cache's server process: proxpi's app, with one race fixed, on the address envcheck gives it.

    python -m envcheck.engine.mirror HOST PORT      (configured by proxpi's PROXPI_* environment variables)

proxpi (1.3.1) publishes a file's download thread before starting it. A second request for the same file in that
instant fails to join the thread ("cannot join thread before it is started"), gives up and redirects the client
to the upstream URL, which a build cannot reach: it has no CA bundle, which is the point of the cache. Two
parallel builds asking for the same wheel hit it (seen in CI: two TF stacks both fetching mdurl). Two first
requests can also both start a download of the same file into the same partial file. Here the decision to
download and the start happen under one lock, and a download that failed is tried again by the next request
instead of sending every later one upstream.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from proxpi import _cache

_starting = threading.Lock()
_proxpi_get = _cache._FileCache.get


def _get(self: Any, url: str) -> str:
    """proxpi's _FileCache.get, after starting the file's download (once) if it is neither cached nor underway."""
    if self.max_size:
        key = self._get_key(url)
        with _starting:
            entry = self._files.get(key)
            failed = isinstance(entry, threading.Thread) and not entry.is_alive()  # a finished one is replaced
            if entry is None or failed:
                self._files.pop(key, None)
                self._start_downloading(url)
                with self._evict_lock:
                    self._evict_lfu(url)
    return _proxpi_get(self, url)


def main(argv: list[str]) -> None:
    host, port = argv
    _cache._FileCache.get = _get
    from proxpi import server  # builds its cache from PROXPI_* when imported

    server.app.run(host=host, port=int(port), threaded=True)


if __name__ == "__main__":
    main(sys.argv[1:])
