#!/usr/bin/env python3
"""A TCP proxy in front of a PostgreSQL server that loses one answer, for
edusync's tests: the connection is cut after the server has committed a
create_sync_error call and before its answer reaches the client.

    cut_proxy.py --host DIR_OR_HOST --port PORT --port-file PATH --cut N [--events FILE]

Listens on 127.0.0.1 (a free port, written to PATH) and forwards every
connection to the server.  The Nth time a client sends a message holding
"create_sync_error" (counted over all connections), the proxy forwards it,
withholds what the server answers, and once that answer's ReadyForQuery has
arrived (so the call's implicit transaction has committed) closes both
sides.  That happens once; everything else passes through.  Each cut is
written to FILE as a line "cut N".  (A statement psycopg has prepared
carries no text; the tests cut before it prepares one.)
"""
import argparse
import os
import signal
import socket
import sys
import threading

MARK = b"create_sync_error"


class Proxy:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.seen = 0
        self.cut_done = False

    def target(self):
        if self.args.host.startswith("/"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(os.path.join(self.args.host, ".s.PGSQL.%d" % self.args.port))
        else:
            s = socket.create_connection((self.args.host, self.args.port))
        return s

    def serve(self, client):
        try:
            server = self.target()
        except OSError:
            client.close()
            return
        state = {"cutting": False}
        threading.Thread(target=self.to_server, args=(client, server, state), daemon=True).start()
        threading.Thread(target=self.to_client, args=(server, client, state), daemon=True).start()

    def to_server(self, client, server, state):
        tail = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                window = tail + data
                found = window.count(MARK)
                if found:
                    with self.lock:
                        self.seen += found
                        if not self.cut_done and self.seen >= self.args.cut:
                            self.cut_done = True
                            state["cutting"] = True   # before the server can answer
                tail = window[-(len(MARK) - 1):]
                server.sendall(data)
        except OSError:
            pass
        close(server, client)

    def to_client(self, server, client, state):
        held = b""
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if not state["cutting"]:
                    client.sendall(data)
                    continue
                held += data
                if ready_for_query(held):
                    if self.args.events:
                        with open(self.args.events, "a") as f:
                            f.write("cut %d\n" % self.args.cut)
                    break
        except OSError:
            pass
        close(server, client)


def ready_for_query(buf):
    """Whether the server messages in buf (from a message start) hold a ReadyForQuery."""
    pos = 0
    while pos + 5 <= len(buf):
        length = int.from_bytes(buf[pos + 1:pos + 5], "big")
        if pos + 1 + length > len(buf):
            return False
        if buf[pos:pos + 1] == b"Z":
            return True
        pos += 1 + length
    return False


def close(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--cut", type=int, required=True)
    parser.add_argument("--events")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % listener.getsockname()[1])
    os.rename(tmp, args.port_file)
    proxy = Proxy(args)
    while True:
        client, _ = listener.accept()
        proxy.serve(client)


if __name__ == "__main__":
    sys.exit(main())
