#!/usr/bin/python3
"""Create School Data Sync errors in edusync, as an application should.

Reads Graph request bodies, one JSON object per line, from FILE (or standard
input) and creates each with edusync.create_sync_error under PROFILE.  Each
error gets its id here, before the first attempt (a random uuid4, unless the
body already has an "id"), so a call cut off by a lost connection can be made
again with the same id: edusync answers a replay of the same id and content
with the stored error, and never stores it twice.

Prints one line per outcome, "<id>: <what happened>", and exits with
  0  every error was created (or queued for delivery)
  1  some errors were refused for good (bad input, or rejected by Graph);
     the others were created
  2  wrong usage
  3  stopped: retry later (Graph unreachable, a timeout, the connection lost)
  4  stopped: an operator must act (authentication, configuration)
"""
import argparse
import json
import random
import sys
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_RETRY_LATER, EXIT_OPERATOR = 0, 1, 2, 3, 4

CREATE = "SELECT edusync.create_sync_error(%s, %s)"


class Stop(Exception):
    """An outcome after which the remaining errors would fail the same way."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class Session:
    """A connection to the database that is opened again when it is lost."""

    def __init__(self, conninfo, forward, retries):
        self.conninfo = conninfo
        self.forward = forward
        self.retries = retries
        self.conn = None

    def connect(self):
        self.conn = psycopg.connect(self.conninfo, autocommit=True,
                                    application_name="edusync-example")
        if self.forward:
            self.set_forward(self.forward)
        else:   # the role's, database's or server's setting
            self.forward = self.conn.execute(
                "SELECT current_setting('edusync.forward', true)").fetchone()[0]

    def set_forward(self, mode):
        self.forward = mode
        if self.conn is not None and not self.conn.closed:
            self.conn.execute("SELECT set_config('edusync.forward', %s, false)", [mode])

    def create(self, profile, body):
        """Create one error; on a lost connection, reconnect and call again
        with the same body (so the same id), up to self.retries times."""
        for attempt in range(1, self.retries + 2):
            try:
                if self.conn is None or self.conn.closed:
                    self.connect()
                return self.conn.execute(CREATE, [profile, Jsonb(body)]).fetchone()[0], attempt
            except psycopg.OperationalError as e:
                if self.conn is not None and not self.conn.closed:
                    raise       # the call failed (57014, ...); the connection is fine
                if attempt > self.retries:
                    raise
                # Exponential backoff with full jitter, at most 8 s.
                delay = random.uniform(0, min(8.0, 0.25 * 2 ** attempt))
                what = "connection lost" if self.conn is not None else "cannot connect"
                print(f"{body['id']}: {what} ({first_line(e)}); "
                      f"retrying with the same id in {delay:.1f} s "
                      f"(attempt {attempt + 1} of {self.retries + 1})", flush=True)
                time.sleep(delay)


def report(error_id, e, session, async_fallback):
    """Say what an error from create_sync_error means for the application.
    Returns EXIT_REFUSED for a refusal of this error alone, "async" to queue
    it instead, or raises Stop when the remaining errors must wait."""
    state = e.sqlstate or ""
    diag = e.diag

    def say(text):
        print(f"{error_id}: {text}", flush=True)

    if state.startswith("22"):
        say(f"data error {state}, fix the input (not retried): {diag.message_primary}")
        return EXIT_REFUSED
    if state in ("23502", "23503", "23505"):
        what = {"23502": "a required field is missing",
                "23503": "the profile does not exist",
                "23505": "this id was already used for another error"}[state]
        say(f"data error {state}, {what} (not retried): {diag.message_primary}")
        return EXIT_REFUSED
    if state == "YG001":
        # The detail holds Graph's own error code and message.
        say(f"rejected by Graph, permanent (not retried): {diag.message_detail}")
        return EXIT_REFUSED
    if state == "YG002" and async_fallback and session.forward == "sync":
        say(f"Graph unreachable ({diag.message_primary}); forwarding asynchronously from now on")
        return "async"
    if state == "YG002":
        say(f"Graph unreachable, retry later: {diag.message_primary}")
        raise Stop(EXIT_RETRY_LATER)
    if state == "57014":
        say(f"cancelled or timed out, retry later: {diag.message_primary}")
        raise Stop(EXIT_RETRY_LATER)
    if state == "YG003":
        say(f"authentication to Graph failed, alert the operator: {diag.message_primary}"
            + (f" ({diag.message_detail})" if diag.message_detail else ""))
        raise Stop(EXIT_OPERATOR)
    if state == "55000":
        say(f"edusync is misconfigured, alert the operator: {diag.message_primary}"
            + (f" HINT: {diag.message_hint}" if diag.message_hint else ""))
        raise Stop(EXIT_OPERATOR)
    say(f"unexpected error {state or '(no SQLSTATE)'}: {first_line(e)}")
    raise Stop(EXIT_OPERATOR)


def run(args):
    session = Session(args.conninfo, args.forward, args.retries)
    status = EXIT_OK
    for number, line in enumerate(args.file, 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            print(f"line {number}: data error, not a JSON object (skipped)", flush=True)
            status = EXIT_REFUSED
            continue
        body.setdefault("id", str(uuid.uuid4()))   # chosen once, kept for every retry
        while True:
            try:
                answer, attempt = session.create(args.profile, body)
            except psycopg.OperationalError as e:
                if session.conn is None or session.conn.closed:
                    print(f"{body['id']}: no connection, giving up after "
                          f"{args.retries + 1} attempts, retry later: {first_line(e)}", flush=True)
                    return EXIT_RETRY_LATER
                outcome = report(body["id"], e, session, args.async_fallback)
            except psycopg.Error as e:
                outcome = report(body["id"], e, session, args.async_fallback)
            else:
                assert answer["id"] == body["id"]
                how = "queued for delivery" if session.forward == "async" else "created"
                print(f"{body['id']}: {how}" + (f" on attempt {attempt}" if attempt > 1 else ""),
                      flush=True)
                break
            if outcome == "async":
                session.set_forward("async")     # the same id again, now through the outbox
                continue
            status = max(status, outcome)
            break
    return status


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", required=True, help="the synchronization profile's id")
    parser.add_argument("--conninfo", default="",
                        help="libpq connection string (default: the PG* environment)")
    parser.add_argument("--forward", choices=("off", "sync", "async"),
                        help="edusync.forward for the session (default: as configured)")
    parser.add_argument("--async-fallback", action="store_true",
                        help="when Graph is unreachable (YG002), queue that error and the "
                             "following ones for the delivery worker instead of stopping")
    parser.add_argument("--retries", type=int, default=5,
                        help="reconnections per error after a lost connection (default: 5)")
    parser.add_argument("file", nargs="?", type=argparse.FileType("r"), default=sys.stdin,
                        help="Graph request bodies, one JSON object per line (default: stdin)")
    args = parser.parse_args()
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    try:
        return run(args)
    except Stop as stop:
        return stop.status


if __name__ == "__main__":
    sys.exit(main())
