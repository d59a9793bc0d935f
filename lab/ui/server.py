"""The page's HTTP server: the standard library's ThreadingHTTPServer, on 127.0.0.1 only.

    GET  /               the page (templates/page.html.j2)
    GET  /events         server-sent events: `static` (buttons, exercises) when it changes,
                         `state` every view.PUSH_S (the VIP, nodes, probes, events, job)
    GET  /api/state      the last state, as JSON (for scripts and tests)
    GET  /topology.svg   the topology picture
    POST /api/fault      {"id": ACTION, "undo": false}
    POST /api/restore    {}
    POST /api/exercise   {"op": "start|hint|check|reset", "name": NAME}

The page can break the lab and asks for no login, so it is served on loopback only, and the
endpoints refuse what a browser would send on another site's behalf: a Host that is not this
server (DNS rebinding), a foreign Origin, a POST without the page's token or not JSON.
"""

from __future__ import annotations

import errno
import json
import secrets
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jinja2

from lab import faults
from lab.errors import HalabError
from lab.ui import actions as ui_actions
from lab.ui import picture, view
from lab.ui.live import Live

ADDRESS = "127.0.0.1"
SSE_KEEPALIVE_S = 10.0


class AddressRefused(HalabError):
    """halab ui binds to 127.0.0.1 and nothing else."""

    exit_code = 2


class PortInUse(HalabError):
    """The port is taken."""


def check_address(address: str) -> None:
    """Refuse any bind address but 127.0.0.1, before anything is started."""
    if address != ADDRESS:
        raise AddressRefused(
            f"halab ui serves on {ADDRESS} only, not on '{address}': the page injects faults "
            "into the lab and asks for no login, so anyone who could reach it could break the "
            "lab. To open it from another machine, tunnel to it over SSH: `ssh -L "
            f"8080:{ADDRESS}:8080 THIS-MACHINE`, then browse http://{ADDRESS}:8080/ there.")


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("lab.ui", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("page.html.j2")


class Hub:
    """The latest state and everything that feeds it; SSE clients wait on it for news."""

    def __init__(self, live: Live, acts: ui_actions.Actions | None = None) -> None:
        self.live = live
        self.actions = acts
        self.cond = threading.Condition()
        self.version = 0
        self.state: dict[str, Any] | None = None
        self.state_json = "{}"
        self.static_json = "{}"
        self.static_version = 0
        self.svg = ""
        self._svg_key = ""
        self._svg_version = ""
        self._svg_error = ""
        self._events: deque[view.Event] = deque(maxlen=view.EVENTS_KEPT)
        self._action_list: list[view.Action] = []
        self.closed = False

    # -- the buttons -----------------------------------------------------------------------
    def action(self, ident: str) -> view.Action:
        for a in self._action_list:
            if a.id == ident:
                return a
        raise HalabError(f"no fault button '{ident}' on this page; reload the page")

    def _static(self) -> None:
        acts = view.fault_actions(self.live.topo, faults.CATALOGUE.values(), self.live.provider,
                                  self.live.daemons())
        if [a.id for a in acts] == [a.id for a in self._action_list] and self.static_version:
            return
        self._action_list = acts
        ex = ui_actions.exercises()
        catalogue, why = [], ui_actions.NO_EXERCISES
        if ex is not None:
            try:
                catalogue, why = ui_actions.plain(ex.catalogue()), ""
            except Exception as e:  # noqa: BLE001 - the panel says so
                why = f"the exercise catalogue could not be read: {e}"
        self.static_version += 1
        self.static_json = json.dumps({
            "version": self.static_version, "lab": self.live.topo.name,
            "actions": [a.as_dict() for a in acts],
            "exercises": {"available": ex is not None and not why, "why": why,
                          "catalogue": catalogue}})

    def note(self, kind: str, text: str) -> None:
        self._events.append(view.Event(time.monotonic(), time.time(), kind, text))

    # -- the picture -----------------------------------------------------------------------
    def _picture(self, st: Any, vip: dict[str, Any]) -> dict[str, Any]:
        if st is None:
            return {"version": self._svg_version, "error": "not asked yet"}
        live_st = view.with_live_vip(st, vip)
        key = repr(live_st)
        if key != self._svg_key:
            self._svg_key = key
            try:
                self.svg = picture.topology_svg(self.live.topo, live_st)
                self._svg_version = str(abs(hash(key)))
                self._svg_error = ""
            except HalabError as e:
                self._svg_error = str(e)
        return {"version": self._svg_version, "error": self._svg_error}

    # -- one push --------------------------------------------------------------------------
    def publish(self) -> None:
        now = time.monotonic()
        parts = self.live.snapshot(now)
        acts = self.actions
        job = acts.job.as_dict(now) if acts is not None and acts.job is not None else None
        ex = ui_actions.exercises()
        if ex is None:
            exercise: dict[str, Any] = {"available": False, "why": ui_actions.NO_EXERCISES}
        else:
            exercise = {"available": True,
                        "active": ui_actions.plain(parts["exercise_active"]),
                        "error": parts["exercise_error"] or "",
                        "result": acts.exercise_result if acts is not None else None}
        lbs = [n.name for n in self.live.topo.load_balancers]
        snap = view.Snapshot(
            now=now, topo=self.live.topo, provider=self.live.provider,
            status=parts["status"], status_at=parts["status_at"],
            status_took=parts["status_took"], status_error=parts["status_error"],
            vip=parts["vip"], records=parts["records"], probing_since=parts["probing_since"],
            probe_errors=parts["probe_errors"], job=job,
            active_faults=sorted(acts.active) if acts is not None else [],
            exercise=exercise,
            topology=self._picture(parts["status"], view.vip_view(lbs, parts["vip"], now)))
        state = view.build(snap)
        for e in view.events(self.state, state, now):
            self._events.append(e)
        state["events"] = view.events_view(self._events, now)
        self._static()
        with self.cond:
            self.state = state
            self.state_json = json.dumps(state)
            self.version += 1
            self.cond.notify_all()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.publish()
            except Exception as e:  # noqa: BLE001 - the page must hear that the page broke
                self.note("observe", f"the page's own state failed: {type(e).__name__}: {e}")
            stop.wait(view.PUSH_S)
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def job_done(self, job: ui_actions.Job, touched: list[str] | None) -> None:
        self.live.reconnect(touched)
        self.note("fault" if job.kind in ("fault", "undo", "restore") else "exercise",
                  f"{job.label}: {job.state}" + (f" ({job.message})" if job.message else ""))


class Handler(BaseHTTPRequestHandler):
    server: UiHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # the terminal is the user's; the page shows what happened

    # -- guards ----------------------------------------------------------------------------
    def _origin_ok(self) -> bool:
        port = self.server.server_address[1]
        mine = {f"{ADDRESS}:{port}", f"localhost:{port}"}
        if self.headers.get("Host") not in mine:
            return False
        origin = self.headers.get("Origin")
        return origin is None or origin in {f"http://{h}" for h in mine}

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; style-src 'unsafe-inline'; "
                         "script-src 'unsafe-inline'; img-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: object) -> None:
        self._send(code, json.dumps(data).encode(), "application/json")

    # -- GET -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._origin_ok():
            return self._json(HTTPStatus.FORBIDDEN, {"ok": False, "message": "wrong Host"})
        path = self.path.split("?", 1)[0]
        hub = self.server.hub
        if path == "/":
            page = self.server.page.render(
                lab=hub.live.topo.name, provider=hub.live.provider,
                vip=str(hub.live.topo.vip), token=self.server.token,
                push_ms=int(view.PUSH_S * 1000), strip_s=view.STRIP_S,
                stale_ms=int((view.PUSH_S * 4 + 2) * 1000))
            return self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        if path == "/events":
            return self._events()
        if path == "/api/state":
            with hub.cond:
                body = hub.state_json
            return self._send(HTTPStatus.OK, body.encode(), "application/json")
        if path == "/topology.svg":
            return self._send(HTTPStatus.OK, hub.svg.encode(), "image/svg+xml")
        return self._json(HTTPStatus.NOT_FOUND, {"ok": False, "message": f"no {path}"})

    def _events(self) -> None:
        hub = self.server.hub
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen, static_seen = -1, -1
        try:
            while True:
                with hub.cond:
                    hub.cond.wait_for(lambda v=seen: hub.version != v or hub.closed,
                                      timeout=SSE_KEEPALIVE_S)
                    if hub.closed:
                        return
                    version, state = hub.version, hub.state_json
                    sv, static = hub.static_version, hub.static_json
                out = []
                if sv != static_seen:
                    out.append(f"event: static\ndata: {static}\n\n")
                    static_seen = sv
                if version != seen:
                    out.append(f"event: state\ndata: {state}\n\n")
                    seen = version
                else:
                    out.append(": keep-alive\n\n")
                self.wfile.write("".join(out).encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return  # the page went away

    # -- POST ------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        if not self._origin_ok():
            return self._json(HTTPStatus.FORBIDDEN, {"ok": False, "message": "wrong Host"})
        if self.headers.get("X-Halab-Token") != self.server.token or \
                not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._json(HTTPStatus.FORBIDDEN,
                              {"ok": False, "message": "not from this page: reload it"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
        except (ValueError, json.JSONDecodeError):
            return self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "message": "not JSON"})
        hub = self.server.hub
        acts = hub.actions
        assert acts is not None
        try:
            if self.path == "/api/fault":
                job = acts.fault(hub.action(str(body.get("id"))), bool(body.get("undo")))
            elif self.path == "/api/restore":
                job = acts.restore()
            elif self.path == "/api/exercise":
                name = body.get("name")
                job = acts.exercise(str(body.get("op")), str(name) if name else None)
            else:
                return self._json(HTTPStatus.NOT_FOUND, {"ok": False,
                                                         "message": f"no {self.path}"})
        except ui_actions.Busy as e:
            return self._json(HTTPStatus.CONFLICT, {"ok": False, "message": str(e)})
        except HalabError as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "message": str(e)})
        hub.note("fault" if job.kind != "exercise" else "exercise", f"{job.label}: started")
        return self._json(HTTPStatus.ACCEPTED, {"ok": True, "message": f"{job.label}: started"})


class UiHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # an open event stream must not keep the process alive

    def __init__(self, address: tuple[str, int], hub: Hub) -> None:
        super().__init__(address, Handler)
        self.hub = hub
        self.token = secrets.token_urlsafe(24)
        self.page = _template()


class UiServer:
    """`halab ui`, as an object: ``with UiServer(lab_file, port) as ui: ui.url``. Binds first
    (a taken port is an error before the lab is asked anything), then asks the lab."""

    def __init__(self, lab_file: Path, port: int = 8080, address: str = ADDRESS,
                 provider: str | None = None, probe_interval: float = view.PROBE_S) -> None:
        check_address(address)
        self.lab_file, self.port, self.address = Path(lab_file), port, address
        self.provider, self.probe_interval = provider, probe_interval
        self._stop = threading.Event()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self.httpd: UiHTTPServer | None = None
        self.live: Live | None = None
        self.actions: ui_actions.Actions | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://{self.address}:{self.httpd.server_address[1]}/"

    def start(self) -> UiServer:
        live = Live(self.lab_file, self.provider, self.probe_interval)
        hub = Hub(live)
        try:
            self.httpd = UiHTTPServer((self.address, self.port), hub)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {self.port} on {self.address} is already in use (another "
                                f"`halab ui`, or another server); choose another one with "
                                f"`--port`, e.g. `halab ui --port {self.port + 1}`") from None
            raise HalabError(f"cannot serve on {self.address}:{self.port}: {e.strerror}") \
                from None
        self.live = live
        self.actions = hub.actions = ui_actions.Actions(self.lab_file, self.provider,
                                                        hub.job_done)
        live.exercises = ui_actions.exercises()
        live.start()
        for name, target in (("halab-ui-push", lambda: hub.run(self._stop)),
                             ("halab-ui-http", self.httpd.serve_forever)):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def wait(self) -> None:
        """Until ``request_stop()`` (a signal handler, another thread) or Ctrl-C."""
        while not self._stop.wait(0.5):
            pass

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self.httpd is not None:
            self.httpd.shutdown()
        for th in self._threads:
            th.join(timeout=5)
        self._threads.clear()
        if self.httpd is not None:
            self.httpd.server_close()
        if self.live is not None:
            self.live.stop()
        if self.actions is not None:
            self.actions.close()

    def __enter__(self) -> UiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
