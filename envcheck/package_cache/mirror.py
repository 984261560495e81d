"""The package cache's server process: proxpi's app, for envcheck's builds only, while any envcheck run uses it.

    python -m envcheck.package_cache.mirror HOST PORT CONTROL_DIR     (proxpi configured by its PROXPI_* variables)

What this adds to proxpi (1.3.1), each a defect seen with proxpi alone:
- Credentials never leave this host. proxpi answers a file it has not (yet) cached — always a `.metadata` file the
  index lacks, every file when the cache directory is read-only or full — with a redirect to the upstream URL,
  and with a private index that URL carries `USER:TOKEN@`. Here the mirror fetches such a file itself and streams
  it; no answer carries a Location header.
- Only envcheck's builds are served: callers from the builds' network (ENVCHECK_MIRROR_ALLOW, CIDRs) and this
  host itself; GET and HEAD of the index, its files and /health, nothing else (proxpi's
  `DELETE /cache/...` answered anyone).
- One mirror per cache directory: it holds CONTROL_DIR/serving.lock for its lifetime and takes it before proxpi
  looks at the directory (proxpi deletes the partial downloads it finds: a second mirror deleted the first's).
- No orphan: every run using the mirror holds a shared lock on CONTROL_DIR/users.lock; the mirror exits when it
  can take that lock exclusively, so it ends with the last run, however that run ended (kill -9 included).
- proxpi publishes a file's download thread before starting it; a second request in that instant failed to join
  it and redirected the client upstream (parallel builds asking for the same wheel hit it; seen in CI), and two
  first requests could both download into one partial file. Here the decision to download and the start happen
  under one lock, and a download that failed is tried again by the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

ENV_ALLOW = "ENVCHECK_MIRROR_ALLOW"  # comma-separated CIDRs the builds come from
ENV_INSTANCE = "ENVCHECK_MIRROR_INSTANCE"  # a random name /health answers with: the run knows its mirror by it
ENV_FINGERPRINT = "ENVCHECK_MIRROR_FINGERPRINT"  # what it serves (hashed), for runs deciding to share it
EXIT_TAKEN = 3  # another mirror serves this directory
EXIT_LISTEN = 4  # cannot listen on HOST:PORT
POLL = 0.5  # seconds between looks at whether any run still uses the mirror
CHUNK = 1 << 20
STREAM_TIMEOUT = (30, 300)  # connect, read: an upstream file streamed through

_starting = threading.Lock()
_proxpi_get: Any = None  # proxpi's own _FileCache.get, which _get calls


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


def allowed_networks(text: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def local_networks(fib_trie: str) -> set[ipaddress.IPv4Network]:
    """This machine's own IPv4 addresses, from /proc/net/fib_trie (each `|-- ADDRESS` followed by `/LEN host LOCAL`:
    a /32 for an interface's address, the whole /8 for loopback). This host asking comes from any of them: Docker's
    MASQUERADE rule for a bridge rewrites the source of a connection from this host to the bridge's address
    (through lo) to the host's main address."""
    found: set[ipaddress.IPv4Network] = set()
    last = ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.endswith("host LOCAL") and last and text.startswith("/"):
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv4Network(f"{last}{text.split()[0]}", strict=False))
    return found


def from_this_host(caller: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return any(caller in network for network in local_networks(Path("/proc/net/fib_trie").read_text()))
    except OSError:
        return False


def guard(app: Any, server: Any, networks: list[ipaddress.IPv4Network], instance: str) -> None:
    """Wrap proxpi's Flask app: who may ask, what may be asked, and files without redirects."""
    import flask

    def only_builds() -> Any:
        try:
            caller = ipaddress.ip_address(flask.request.remote_addr or "")
        except ValueError:
            caller = None
        if caller is None or not (any(caller in network for network in networks) or from_this_host(caller)):
            return flask.Response("envcheck's package cache serves envcheck's builds only\n", 403)
        if flask.request.method not in ("GET", "HEAD"):
            return flask.Response("read-only\n", 405, {"Allow": "GET, HEAD"})
        if not (flask.request.path == "/health" or flask.request.path.startswith("/index/")):
            return flask.Response("not found\n", 404)
        return None

    proxpi_get_file = app.view_functions["get_file"]

    def get_file(package_name: str, file_name: str) -> Any:
        answer = flask.make_response(proxpi_get_file(package_name, file_name))
        if answer.status_code // 100 != 3:
            return answer
        return _stream_upstream(server, answer.headers.get("Location", ""))

    def health() -> Any:
        return {"status": "success", "instance": instance}

    app.before_request(only_builds)
    app.view_functions["get_file"] = get_file
    app.view_functions["health"] = health


def _stream_upstream(server: Any, url: str) -> Any:
    """The file proxpi would have redirected to, fetched here with this host's session (its credentials stay here)
    and streamed; an upstream failure is answered with its status and no detail."""
    import flask
    import requests

    try:
        upstream = server.cache.root_cache.session.get(url, stream=True, timeout=STREAM_TIMEOUT)
    except requests.RequestException:
        return flask.Response("the index did not answer\n", 502)
    if upstream.status_code != 200:
        upstream.close()
        return flask.Response(f"the index answered {upstream.status_code}\n", upstream.status_code)
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "content-length", "etag")}

    def body() -> Any:
        try:
            yield from upstream.iter_content(CHUNK)
        finally:
            upstream.close()

    return flask.Response(body(), 200, headers, direct_passthrough=True)


def try_lock(path: Path, mode: int) -> int | None:
    """An open descriptor holding flock `mode` on path, or None where another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def main(argv: list[str]) -> int:
    host, port, control = argv[0], int(argv[1]), Path(argv[2])
    serving = try_lock(control / "serving.lock", fcntl.LOCK_EX)
    if serving is None:
        print(f"mirror: another mirror serves this cache directory ({control})", file=sys.stderr, flush=True)
        return EXIT_TAKEN
    global _proxpi_get
    from proxpi import _cache

    _proxpi_get, _cache._FileCache.get = _cache._FileCache.get, _get
    from proxpi import server  # builds its cache from PROXPI_* when imported
    from werkzeug.serving import make_server

    instance = os.environ.get(ENV_INSTANCE, "")
    guard(server.app, server, allowed_networks(os.environ.get(ENV_ALLOW, "")), instance)
    try:
        listening = socket.create_server((host, port))  # here, not in werkzeug: it prints and exits on an error
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"mirror: cannot listen on {host}:{port} ({why})", file=sys.stderr, flush=True)
        return EXIT_LISTEN
    httpd = make_server(host, port, server.app, threaded=True, fd=listening.fileno())
    state = {"pid": os.getpid(), "instance": instance, "fingerprint": os.environ.get(ENV_FINGERPRINT, "")}
    partial = control / f"state.json.{os.getpid()}"
    partial.write_text(json.dumps(state))
    partial.replace(control / "state.json")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    users = None
    while not stop.wait(POLL):
        users = try_lock(control / "users.lock", fcntl.LOCK_EX)
        if users is not None:  # no run uses the mirror any more; runs that come now wait until it has gone
            break
    httpd.shutdown()
    httpd.server_close()
    with contextlib.suppress(OSError):
        (control / "state.json").unlink()
    os.close(serving)
    if users is not None:
        os.close(users)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
