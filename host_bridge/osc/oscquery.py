"""OSCQuery: the graph's params as a JSON tree over HTTP, so VDMX, Chataigne or ossia score find them.

`GET /` gives the whole tree, `GET /<node>` and `GET /<node>/<param>` a part
of it, `?ATTR` one attribute (`/?HOST_INFO`, `/cppn/seed?VALUE`). Values are
read live from the ParamControl. The service is announced over mDNS
(`_oscjson._tcp`) when the optional `zeroconf` package is installed and the
server is reachable from other machines.

A param with a log scale: the OSCQuery proposal has no attribute for a fader's
scaling, so RANGE keeps its meaning (MIN and MAX of the values, in the param's
units) and the scale is said where the proposal leaves room: TAGS (free strings
"for searching and filtering", here "log") and DESCRIPTION. A client that knows
the tag can draw a log fader; one that does not sees the same RANGE as before.
File params are read-only live (ACCESS 1): a change is refused while the show runs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from cppnviz.errors import CppnvizError
from cppnviz.params import Param

from .control import ParamControl

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_oscjson._tcp.local."
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "VALUE", "RANGE", "ACCESS", "DESCRIPTION", "UNIT", "CLIPMODE",
              "TAGS")
# What HOST_INFO says this server supports (the spec's optional extensions).
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "UNIT": True,
              "CLIPMODE": True, "TAGS": True, "EXTENDED_TYPE": False, "CRITICAL": False,
              "OVERLOADS": False, "LISTEN": False, "PATH_CHANGED": False, "HTML": False}
ACCESS_NONE, ACCESS_READ, ACCESS_READ_WRITE = 0, 1, 3


# -- the tree (plain functions of the control's current state) -------------------------

def param_entry(control: ParamControl, node: str, decl: Param) -> dict[str, Any]:
    """One param as an OSCQuery method node; VALUE is read now."""
    value = control.value(node, decl.name)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    entry: dict[str, Any] = {
        "FULL_PATH": f"/{node}/{decl.name}",
        "TYPE": "".join(_tag(decl) for _ in values),
        "VALUE": values,
        "ACCESS": ACCESS_READ if decl.type == "path" else ACCESS_READ_WRITE,
        "DESCRIPTION": decl.doc,
    }
    if decl.scale == "log":
        entry["TAGS"] = ["log"]
        entry["DESCRIPTION"] += " (log scale: /norm 0..1 spreads the range by ratio)"
    rng = _range(decl)
    if rng is not None:
        entry["RANGE"] = [rng] * len(values)
    if decl.unit:
        entry["UNIT"] = [decl.unit] * len(values)
    clip = _clipmode(decl)
    if clip is not None:
        entry["CLIPMODE"] = [clip] * len(values)
    drive = control.drive(node, decl.name)
    if drive is not None:
        # The drive sets it every tick: read-only, with the mapping's fields beneath it.
        entry["ACCESS"] = ACCESS_READ
        entry["DESCRIPTION"] += f" (driven by {drive.spec.label}: steer its drive/min, drive/max, drive/amount)"
        entry["CONTENTS"] = {"drive": drive_entry(control, node, decl.name)}
    return entry


def drive_entry(control: ParamControl, node: str, param: str) -> dict[str, Any]:
    """A driven param's mapping fields (min, max, amount) as OSCQuery method nodes."""
    drive = control.drive(node, param)
    base = f"/{node}/{param}/drive"
    contents = {}
    for name, decl in drive.fields():
        contents[name] = {"FULL_PATH": f"{base}/{name}", "TYPE": "f", "VALUE": [getattr(drive.mapping, name)],
                          "ACCESS": ACCESS_READ_WRITE, "DESCRIPTION": decl.doc, "CLIPMODE": ["both"],
                          "RANGE": [{"MIN": decl.min, "MAX": decl.max}]}
    return {"FULL_PATH": base, "ACCESS": ACCESS_NONE, "DESCRIPTION": f"the mapping from {drive.spec.label}",
            "CONTENTS": contents}


def node_entry(control: ParamControl, node: str) -> dict[str, Any]:
    graph_node = control.graph.nodes[node]
    return {
        "FULL_PATH": f"/{node}",
        "ACCESS": ACCESS_NONE,
        "DESCRIPTION": f"{graph_node.type_name}: {graph_node.doc()}",
        "CONTENTS": {decl.name: param_entry(control, node, decl) for decl in graph_node.params},
    }


def tree(control: ParamControl) -> dict[str, Any]:
    """The whole address space."""
    return {
        "FULL_PATH": "/",
        "ACCESS": ACCESS_NONE,
        "DESCRIPTION": "cppnviz graph params",
        "CONTENTS": {name: node_entry(control, name) for name in control.graph.nodes},
    }


def lookup(control: ParamControl, path: str) -> dict[str, Any] | None:
    """The entry at an OSC path ('/', '/node', '/node/param'), or None."""
    parts = [p for p in path.split("/") if p]
    nodes = control.graph.nodes
    if not parts:
        return tree(control)
    if parts[0] not in nodes or len(parts) > 4:
        return None
    if len(parts) == 1:
        return node_entry(control, parts[0])
    decl = next((d for d in nodes[parts[0]].params if d.name == parts[1]), None)
    if decl is None:
        return None
    entry = param_entry(control, parts[0], decl)
    for part in parts[2:]:
        entry = entry.get("CONTENTS", {}).get(part)
        if entry is None:
            return None
    return entry


def _tag(decl: Param) -> str:
    return {"float": "f", "floats": "f", "int": "i", "bool": "T"}.get(decl.type, "s")


def _range(decl: Param) -> dict[str, Any] | None:
    if decl.type == "choice":
        return {"VALS": list(decl.choices)}
    bounds = {k: v for k, v in (("MIN", decl.min), ("MAX", decl.max)) if v is not None}
    return bounds or None


def _clipmode(decl: Param) -> str | None:
    # Out-of-range values from a controller are clamped to whichever bounds exist.
    if decl.type in ("bool", "str", "path", "choice"):
        return None
    low, high = decl.min is not None, decl.max is not None
    return {(True, True): "both", (True, False): "low", (False, True): "high"}.get((low, high))


# -- HTTP ---------------------------------------------------------------------------

class OscQueryServer:
    """OSCQuery: the JSON tree of every param over HTTP, advertised over mDNS when zeroconf is installed."""

    def __init__(self, control: ParamControl, host: str = "127.0.0.1", port: int = 0, osc_port: int = 9000,
                 name: str = "cppnviz", *, advertise: bool | None = None):
        self.control = control
        self.host = host
        self.osc_port = osc_port
        self.name = name
        try:
            self._httpd = ThreadingHTTPServer((host, port), _Handler)
        except OSError as exc:
            raise CppnvizError(f"cannot serve OSCQuery on {host}:{port}: {exc.strerror or exc}; "
                               "choose another port") from exc
        self._httpd.daemon_threads = True
        self._httpd.oscquery = self
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None
        # None: announce when zeroconf is there and other machines can reach us
        # (announcing a loopback-only server would only mislead them).
        self.advertise = _reachable(host) if advertise is None else advertise
        self._zeroconf = None
        self._service = None

    def host_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"NAME": self.name, "EXTENSIONS": EXTENSIONS,
                                "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP"}
        # A wildcard address means nothing to a client; without OSC_IP it uses the HTTP host's.
        if self.host not in ("", "0.0.0.0"):
            info["OSC_IP"] = self.host
        return info

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"oscquery:{self.port}", daemon=True)
        self._thread.start()
        if self.advertise:
            self._announce()

    def close(self) -> None:
        if self._zeroconf is not None:
            self._zeroconf.unregister_service(self._service)
            self._zeroconf.close()
            self._zeroconf = None
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> OscQueryServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def service_info(self):
        """The mDNS record for this server (zeroconf.ServiceInfo); ImportError without zeroconf."""
        from zeroconf import ServiceInfo

        ip = self.host if self.host not in ("", "0.0.0.0") else _local_ip()
        return ServiceInfo(SERVICE_TYPE, f"{self.name}.{SERVICE_TYPE}", port=self.port,
                           addresses=[socket.inet_aton(ip)], server=f"{socket.gethostname()}.local.",
                           properties={"txtvers": "1"})

    def _announce(self) -> None:
        try:
            from zeroconf import Zeroconf
        except ImportError:
            logger.info("zeroconf is not installed: OSCQuery on port %d is not announced over mDNS", self.port)
            return
        self._service = self.service_info()
        self._zeroconf = Zeroconf()
        self._zeroconf.register_service(self._service, allow_name_change=True)


def _reachable(host: str) -> bool:
    """Whether a server bound to `host` can be reached from other machines."""
    if host in ("", "0.0.0.0"):
        return True
    try:
        return not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _local_ip() -> str:
    # The address a route to the outside would use; connect() on UDP sends nothing.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never contacted
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    server_version = "cppnviz-oscquery"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server: OscQueryServer = self.server.oscquery
        url = urlsplit(self.path)
        attr = unquote(url.query)
        path = unquote(url.path)
        if attr == "HOST_INFO":
            return self._json(HTTPStatus.OK, server.host_info())
        if attr and attr not in ATTRIBUTES:
            return self._error(HTTPStatus.BAD_REQUEST, f"unknown attribute {attr!r}; expected one of "
                                                       f"{', '.join(ATTRIBUTES)} or HOST_INFO")
        entry = lookup(server.control, path)
        if entry is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no OSC node at {path}")
        if not attr:
            return self._json(HTTPStatus.OK, entry)
        if attr not in entry:
            return self._error(HTTPStatus.NO_CONTENT, "")
        return self._json(HTTPStatus.OK, {attr: entry[attr]})

    def _json(self, status: HTTPStatus, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str) -> None:
        data = message.encode("utf-8")
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:  # a 204 carries no body
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != HTTPStatus.NO_CONTENT:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        # Requests are routine; keep them out of the show's console.
        logger.debug("%s " + format, self.address_string(), *args)
