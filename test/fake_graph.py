#!/usr/bin/env python3
"""A fake Microsoft Graph for edusync's tests: a real HTTP/1.1 server on
127.0.0.1 that implements the errors collection, the OAuth2 token endpoint
and $batch, records every request, and can be scripted to fail.

    fake_graph.py --port 0 --port-file PATH [--token T]... \
        [--client-id ID --client-secret S] [--expires-in N] [--log FILE]

Control API (no auth), under /_fake/:
    POST /_fake/script   {"kind": K, "actions": [ACTION, ...]}  queue actions
    POST /_fake/outage   {"kind": K, "seconds": N, "status": S, "headers": {},
                          "drop": bool}                          fail for a while
    POST /_fake/revoke                                           tokens invalid
    POST /_fake/config   {"tokens": [...], "client_id": ..., "client_secret": ...,
                          "expires_in": N}
    POST /_fake/reset                                            records, scripts
    GET  /_fake/requests                                         what was received
    GET  /_fake/stats                                            counts

K is one of errors, batch, batch_item, token, any.  ACTION fields: status,
body, headers, delay (seconds), drop (close without answer), redirect (URL),
repeat (how many requests it serves), echo (answer with every header and the
body received, as a hostile endpoint would), body_hex (answer these raw bytes).
A 200 or 201 is scripted only with a body or body_hex.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

ERRORS_SUFFIX = "/errors"
PROFILES = "/education/synchronizationProfiles/"
KINDS = ("errors", "batch", "batch_item", "token", "any")

GRAPH_ERRORS = {
    400: ("BadRequest", "Invalid request."),
    401: ("InvalidAuthenticationToken", "Access token is empty."),
    403: ("Forbidden", "Insufficient privileges to complete the operation."),
    404: ("ResourceNotFound", "Resource not found."),
    408: ("RequestTimeout", "The request timed out."),
    409: ("Conflict", "The entity already exists."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "Service unavailable."),
    504: ("GatewayTimeout", "Gateway timeout."),
}


def graph_error(status, request_id=None):
    code, message = GRAPH_ERRORS.get(status, ("UnknownError", "Error %d." % status))
    return {"error": {"code": code, "message": message, "innerError": {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "request-id": str(uuid.uuid4()),
        "client-request-id": request_id or ""}}}


class State:
    """Everything the handlers share, behind one lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.tokens = set(args.token or [])
        self.client_id = args.client_id
        self.client_secret = args.client_secret
        self.expires_in = args.expires_in
        self.stopping = threading.Event()
        self.reset()
        self.connections = 0
        self.open_connections = 0
        self.max_concurrent = 0

    def reset(self):
        self.requests = []
        self.scripts = {k: [] for k in KINDS}
        self.outages = {}
        self.tokens_issued = 0
        self.connections = 0
        self.max_concurrent = 0

    def record(self, entry):
        with self.lock:
            entry["seq"] = len(self.requests) + 1
            self.requests.append(entry)
            return entry

    def next_action(self, kind):
        """The scripted action for a request of this kind, or None."""
        with self.lock:
            outage = self.outages.get(kind) or self.outages.get("any")
            if outage and time.time() < outage["until"]:
                return outage
            for k in (kind, "any"):
                queue = self.scripts[k]
                if queue:
                    action = queue[0]
                    action["_left"] = action.get("_left", action.get("repeat", 1)) - 1
                    if action["_left"] <= 0:
                        queue.pop(0)
                    return action
            return None

    def stats(self):
        with self.lock:
            per_kind, per_status = {}, {}
            for r in self.requests:
                per_kind[r["kind"]] = per_kind.get(r["kind"], 0) + 1
                key = str(r["status"])
                per_status[key] = per_status.get(key, 0) + 1
            return {"kinds": per_kind, "statuses": per_status,
                    "tokens_issued": self.tokens_issued,
                    "connections": self.connections,
                    "max_concurrent_connections": self.max_concurrent}


def sleep_interruptibly(state, seconds):
    end = time.time() + seconds
    while time.time() < end and not state.stopping.is_set():
        time.sleep(min(0.05, max(0.0, end - time.time())))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGraph/1.0"
    sys_version = ""

    # --- connection bookkeeping and logging

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counted = False

    def count_connection(self):
        """Count a connection once it carries a request to Graph (not /_fake/)."""
        if self.counted:
            return
        self.counted = True
        st = self.server.state
        with st.lock:
            st.connections += 1
            st.open_connections += 1
            st.max_concurrent = max(st.max_concurrent, st.open_connections)

    def finish(self):
        try:
            super().finish()
        finally:
            if self.counted:
                st = self.server.state
                with st.lock:
                    st.open_connections -= 1

    def log_message(self, fmt, *args):
        log = self.server.log
        if log:
            log.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))
            log.flush()

    # --- sending

    def send(self, status, body=None, headers=None):
        """One answer, written in a single send (no Nagle stalls)."""
        if body is None:
            data = b""
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        lines = ["HTTP/1.1 %d %s" % (status, self.responses.get(status, ("",))[0])]
        hdrs = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        hdrs.update(headers or {})
        lines += ["%s: %s" % (k, v) for k, v in hdrs.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        self.wfile.flush()

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- dispatch

    def do_GET(self):
        self.body = b""
        if self.path == "/_fake/requests":
            with self.server.state.lock:
                return self.send(200, list(self.server.state.requests))
        if self.path == "/_fake/stats":
            return self.send(200, self.server.state.stats())
        return self.send(404, graph_error(404))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path.startswith("/_fake/"):
            return self.control(path)
        self.count_connection()
        if path.endswith("/$batch"):
            return self.batch()
        if path.endswith("/oauth2/v2.0/token"):
            return self.token()
        if PROFILES in path and path.endswith(ERRORS_SUFFIX):
            return self.create()
        self.record("unknown", None, 404)
        return self.send(404, graph_error(404))

    # --- recording and scripting

    def headers_dict(self):
        return {k.lower(): v for k, v in self.headers.items()}

    def record(self, kind, profile_id, status, extra=None):
        try:
            parsed = json.loads(self.body) if self.body else None
        except ValueError:
            parsed = None
        entry = {"time": time.time(), "method": self.command, "raw_path": self.path,
                 "path": unquote(self.path), "kind": kind, "profile_id": profile_id,
                 "headers": self.headers_dict(),
                 "body": self.body.decode("utf-8", "replace"),
                 "json": parsed, "status": status}
        entry.update(extra or {})
        return self.server.state.record(entry)

    def scripted(self, kind, request_id=None, profile_id=None):
        """Apply a scripted action; True when it answered (or dropped).
        The request is recorded before the answer leaves, so that a client
        that has its answer always finds the request recorded."""
        st = self.server.state
        action = st.next_action(kind)
        if action is None:
            return False, None
        if action.get("delay"):
            sleep_interruptibly(st, float(action["delay"]))
        if action.get("drop"):
            self.record(kind, profile_id, None)
            self.drop()
            return True, None
        if action.get("echo"):
            # a hostile endpoint: repeat everything it was sent
            status = int(action.get("status", 400))
            text = "echo: %s | body: %s" % (
                " | ".join("%s: %s" % kv for kv in self.headers.items()),
                self.body.decode("utf-8", "replace"))
            if kind == "token":
                body = {"error": "invalid_request", "error_description": text}
            else:
                body = {"error": {"code": "Echo", "message": text}}
            self.record(kind, profile_id, status)
            self.send(status, body, action.get("headers"))
            return True, status
        if "body_hex" in action:
            # raw bytes, any status: invalid UTF-8, odd JSON
            status = int(action.get("status", 201))
            self.record(kind, profile_id, status)
            self.send(status, bytes.fromhex(action["body_hex"]), action.get("headers"))
            return True, status
        if action.get("redirect"):
            self.record(kind, profile_id, 302)
            self.send(302, {"redirected": True}, {"Location": action["redirect"]})
            return True, 302
        if "status" in action and (action["status"] not in (200, 201) or "body" in action):
            status = int(action["status"])
            body = action.get("body", graph_error(status, request_id))
            self.record(kind, profile_id, status)
            self.send(status, body, action.get("headers"))
            return True, status
        return False, None

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        with self.server.state.lock:
            return auth[len("Bearer "):] in self.server.state.tokens

    # --- endpoints

    def create(self):
        path = self.path.split("?", 1)[0]
        raw_profile = path[path.index(PROFILES) + len(PROFILES):-len(ERRORS_SUFFIX)]
        profile_id = unquote(raw_profile)
        request_id = self.headers.get("client-request-id")
        done, status = self.scripted("errors", request_id, profile_id)
        if done:
            return
        status, body = self.create_answer(self.authorized(), self.body, request_id)
        self.record("errors", profile_id, status)
        self.send(status, body, {"client-request-id": request_id or ""})

    def create_answer(self, authorized, raw, request_id):
        if not authorized:
            return 401, graph_error(401, request_id)
        try:
            obj = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            return 400, graph_error(400, request_id)
        answer = dict(obj)
        answer["@odata.context"] = ("https://graph.microsoft.com/beta/$metadata"
                                    "#education/synchronizationProfiles('x')/errors/$entity")
        answer["id"] = str(uuid.uuid4())
        return 201, answer

    def batch(self):
        done, status = self.scripted("batch")
        if done:
            return
        try:
            requests = json.loads(self.body)["requests"]
            assert isinstance(requests, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            self.record("batch", None, 400)
            return self.send(400, graph_error(400))
        if len(requests) > 20:
            self.record("batch", None, 400)
            return self.send(400, {"error": {"code": "BadRequest",
                                             "message": "Batch exceeds 20 requests."}})
        authorized = self.authorized()
        responses = [self.batch_item(item, authorized) for item in requests]
        self.record("batch", None, 200)
        self.send(200, {"responses": responses})

    def batch_item(self, item, authorized):
        st = self.server.state
        url = item.get("url", "")
        headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        request_id = headers.get("client-request-id")
        profile_id = None
        if PROFILES in url and url.endswith(ERRORS_SUFFIX):
            profile_id = unquote(url[url.index(PROFILES) + len(PROFILES):-len(ERRORS_SUFFIX)])
        action = st.next_action("batch_item")
        if action and "status" in action and action["status"] not in (200, 201):
            status = int(action["status"])
            body = action.get("body", graph_error(status, request_id))
            out_headers = dict(action.get("headers") or {})
        elif profile_id is None or item.get("method") != "POST":
            status, body, out_headers = 404, graph_error(404, request_id), {}
        else:
            status, body = self.create_answer(authorized, item.get("body"), request_id)
            out_headers = {"client-request-id": request_id or ""}
        out_headers["Content-Type"] = "application/json"
        st.record({"time": time.time(), "method": item.get("method"), "raw_path": url,
                   "path": unquote(url), "kind": "batch_item", "profile_id": profile_id,
                   "headers": headers, "body": json.dumps(item.get("body")),
                   "json": item.get("body"), "status": status, "batch_id": item.get("id")})
        return {"id": item.get("id"), "status": status, "headers": out_headers, "body": body}

    def token(self):
        done, status = self.scripted("token")
        if done:
            return
        form = {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}
        st = self.server.state
        if form.get("grant_type") != "client_credentials":
            self.record("token", None, 400)
            return self.send(400, {"error": "unsupported_grant_type",
                                   "error_description": "AADSTS70003: grant_type is not supported."})
        if (not st.client_id or form.get("client_id") != st.client_id
                or form.get("client_secret") != st.client_secret):
            self.record("token", None, 401)
            return self.send(401, {"error": "invalid_client",
                                   "error_description": "AADSTS7000215: Invalid client secret provided."})
        token = "fake-" + uuid.uuid4().hex
        with st.lock:
            st.tokens.add(token)
            st.tokens_issued += 1
        self.record("token", None, 200)
        self.send(200, {"token_type": "Bearer", "expires_in": st.expires_in,
                        "ext_expires_in": st.expires_in, "access_token": token})

    def control(self, path):
        st = self.server.state
        try:
            req = json.loads(self.body) if self.body else {}
        except ValueError:
            return self.send(400, {"error": "bad JSON"})
        with st.lock:
            if path == "/_fake/script":
                kind = req.get("kind", "errors")
                if kind not in KINDS:
                    return self.send(400, {"error": "unknown kind"})
                st.scripts[kind].extend(dict(a) for a in req.get("actions", []))
            elif path == "/_fake/outage":
                outage = dict(req)
                outage["until"] = time.time() + float(req.get("seconds", 1))
                st.outages[req.get("kind", "errors")] = outage
            elif path == "/_fake/revoke":
                st.tokens = set()
            elif path == "/_fake/config":
                if "tokens" in req:
                    st.tokens = set(req["tokens"])
                for key in ("client_id", "client_secret", "expires_in"):
                    if key in req:
                        setattr(st, key, req[key])
            elif path == "/_fake/reset":
                st.reset()
            else:
                return self.send(404, {"error": "unknown control"})
        return self.send(200, {"ok": True})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--token", action="append")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--expires-in", type=int, default=3599)
    parser.add_argument("--log")
    args = parser.parse_args()

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.state = State(args)
    server.log = open(args.log, "a") if args.log else None

    def stop(signum, frame):
        server.state.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
