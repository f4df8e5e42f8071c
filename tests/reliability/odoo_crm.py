"""A served Odoo as the soak's CRM, behind a fault proxy on its XML-RPC.

The daemon reaches Odoo only through `FaultProxy`, which can be down (connections refused
with 502, as a reverse proxy answers for a stopped Odoo), slow, answer ``could not serialize
access due to concurrent update`` (PostgreSQL's serialization failure that Odoo gave up
retrying; the call is not carried out), or restart (down for a few seconds, connections in
flight cut). A person's actions (meetings, Compose Email as the account's owner, a retry) and
the comparison's reads go straight to Odoo over plain XML-RPC on its own models.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import secrets
import threading
import time
import xmlrpc.client
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from m365sync.crm.odoo import XmlRpcTransport
from m365sync.domain import OutboxState
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.seed import crm_contacts
from m365sync.service.connect import connect_account
from m365sync.service.runtime import Runtime

from .harness import PERSON_PAUSE, Daemon, as_a_person

ODOO_TIME = "%Y-%m-%d %H:%M:%S"
SERIALIZATION = "could not serialize access due to concurrent update"


class FaultProxy:
    """HTTP proxy in front of Odoo; `mode` says how it misbehaves (None: it does not)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.mode: str | None = None
        self.until = 0.0
        self.serialize_left = 0
        self.delay = 0.0
        self.served: Counter[str] = Counter()  # faults actually met by a call, by kind
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The client hung up mid-request (a daemon killed while sending): nothing
                    # to forward. Sent on with its full Content-Length, the short body would
                    # hold an Odoo thread reading for ever, and Odoo's threaded server reloads
                    # itself after 120 s of that (limit_time_real).
                    self.close_connection = True
                    return
                answer = proxy.fault_for(self.path)
                if answer == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                if answer == "down":
                    self._reply(502, b"Bad Gateway", "text/plain")
                    return
                if answer == "serialize":
                    fault = xmlrpc.client.Fault(1, f"psycopg2.errors.SerializationFailure: "
                                                   f"{SERIALIZATION}")  # fmt: skip
                    text = xmlrpc.client.dumps(fault, methodresponse=True).encode()
                    self._reply(200, text, "text/xml")
                    return
                upstream = http.client.HTTPConnection(proxy.host, proxy.port, timeout=300)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request("POST", self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    kind = response.getheader("Content-Type") or "text/xml"
                    self._reply(response.status, data, kind)
                finally:
                    upstream.close()

            def _reply(self, status: int, data: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client hanging up on a cut connection is the point, not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fault_for(self, path: str) -> str | None:
        """What to do with one call (only the daemon's object calls are faulted)."""
        with self.lock:
            mode, until = self.mode, self.until
            if mode == "serialize" and self.serialize_left > 0 and path.endswith("/object"):
                self.serialize_left -= 1
                self.served["serialization failure"] += 1
                return "serialize"
            delay = self.delay if mode == "slow" and time.monotonic() < until else 0.0
            down = mode in ("down", "restart") and time.monotonic() < until
            if delay or down:
                self.served[{"slow": "slow", "down": "down (502)", "restart": "restart"}[mode]] += 1
        if delay:
            time.sleep(delay)
            return None
        if down:
            return "drop" if mode == "restart" else "down"
        return None

    def misbehave(self, rng: random.Random) -> str:
        mode = rng.choice(["down", "slow", "serialize", "serialize", "restart"])
        with self.lock:
            self.mode = mode
            self.until = time.monotonic() + rng.uniform(0.5, 3.0)
            self.serialize_left = rng.randint(1, 4)
            self.delay = rng.uniform(0.2, 1.5)
        return f"odoo {mode}"

    def calm(self) -> None:
        with self.lock:
            self.mode = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PersonTransport:
    """Plain XML-RPC as a person (or the comparison) uses Odoo: a call refused with
    `Conflict` (the daemon wrote the same records at that moment; Odoo kept nothing of the
    call) is made again after a short pause, as Odoo's message asks (`harness.as_a_person`).
    The daemon's own transport is never wrapped: it handles a Conflict itself."""

    def __init__(self, transport: Any, *, pause: float = PERSON_PAUSE) -> None:
        self.transport = transport
        self.pause = pause

    def execute_kw(
        self, model: str, method: str, args: list[Any], kwargs: dict[str, Any] | None = None
    ) -> Any:
        call = partial(self.transport.execute_kw, model, method, args, kwargs)
        return as_a_person(call, pause=self.pause)

    def close(self) -> None:
        self.transport.close()


def admin() -> PersonTransport:
    return PersonTransport(
        XmlRpcTransport(
            os.environ["ODOO_URL"],
            os.environ["ODOO_DB"],
            os.environ.get("ODOO_ADMIN_USER") or os.environ["ODOO_USER"],
            os.environ.get("ODOO_ADMIN_PASSWORD") or os.environ["ODOO_PASSWORD"],
            timeout=120,
        )
    )


class OdooCrm:
    """`harness.Crm` over a served Odoo (the person's side over plain XML-RPC)."""

    misbehaviour_weight = 4  # Odoo's own failures are what this store's soak is about

    def __init__(self, config_path: Path, config: Any, mailbox: Mailbox, proxy: FaultProxy):
        self.config = config
        self.proxy = proxy
        self.admin = admin()
        self.event_ids: list[int] = []
        self.user_ids: list[int] = []
        self.partner_rows = self._seed_contacts(mailbox)
        runtime = self.runtime()
        try:
            self.account_id = as_a_person(
                lambda: connect_account(runtime, browser="follow", announce=lambda _text: None)
            ).id
        finally:
            runtime.close()
        self.user_id, self.user = self._owner()
        self.admin.execute_kw(
            "m365.account", "write", [[self.account_id], {"user_id": self.user_id}]
        )

    # --- set-up ---------------------------------------------------------------------------------

    def _seed_contacts(self, mailbox: Mailbox) -> list[tuple[int, str, str]]:
        contacts = crm_contacts(mailbox)
        if not contacts:
            return []
        domain: list[Any] = ["|"] * (len(contacts) - 1)
        domain += [("email", "=ilike", contact["email"]) for contact in contacts]
        found: dict[str, int] = {}
        for row in self.admin.execute_kw(
            "res.partner", "search_read", [domain], {"fields": ["email"]}
        ):  # one read for all (Odoo's order: the first match of each address wins)
            found.setdefault((row["email"] or "").lower(), row["id"])
        rows = []
        for contact in contacts:
            email = contact["email"]
            pid = found.get(email.lower()) or self.admin.execute_kw(
                "res.partner", "create", [{"name": contact["name"] or email, "email": email}]
            )  # fmt: skip
            rows.append((pid, email, contact["name"] or email))
        return rows

    def _owner(self) -> tuple[int, PersonTransport]:
        login = f"m365-soak-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(18)
        groups = [
            self.admin.execute_kw(
                "ir.model.data", "search_read",
                [[("module", "=", module), ("name", "=", name)]], {"fields": ["res_id"]},
            )[0]["res_id"]
            for module, name in (("base", "group_user"), ("crm_microsoft365", "group_m365_user"))
        ]  # fmt: skip
        user_id = self.admin.execute_kw(
            "res.users", "create",
            [{"name": f"Sales {login}", "login": login, "password": password,
              "groups_id": [(6, 0, groups)]}],
        )  # fmt: skip
        self.user_ids.append(user_id)
        user = PersonTransport(
            XmlRpcTransport(os.environ["ODOO_URL"], os.environ["ODOO_DB"], login, password)
        )
        return user_id, user

    # --- harness.Crm ------------------------------------------------------------------------------

    def runtime(self) -> Runtime:
        return Runtime.build(self.config)

    def partner_emails(self) -> list[tuple[int, str, str]]:
        return self.partner_rows[:8]

    def create_meeting(self, subject, start, hours, count, people) -> None:
        values: dict[str, Any] = {
            "name": subject,
            "start": start.astimezone(UTC).strftime(ODOO_TIME),
            "stop": (start + timedelta(hours=hours)).astimezone(UTC).strftime(ODOO_TIME),
            "partner_ids": [(6, 0, [pid for pid, _e, _n in people])],
            "m365_owner_account_id": self.account_id,
        }
        if count > 1:
            values.update(recurrency=True, rrule_type="daily", interval=1, end_type="count",
                          count=count, event_tz="UTC")  # fmt: skip
        self.event_ids.append(self.user.execute_kw("calendar.event", "create", [values]))

    def _events(self, fields: list[str]) -> list[dict[str, Any]]:
        return self.admin.execute_kw(
            "calendar.event", "search_read",
            [["|", ("m365_owner_account_id", "=", self.account_id),
              ("m365_binding_ids.account_id", "=", self.account_id)]],
            {"fields": fields},
        )  # fmt: skip

    def meetings(self) -> list[dict[str, Any]]:
        rows = self._events(["name", "recurrence_id", "m365_is_series_master",
                             "m365_series_master_id", "m365_is_cancelled"])  # fmt: skip
        return [
            {
                "id": r["id"],
                "subject": r["name"],
                "series_id": (r["m365_series_master_id"] or r["recurrence_id"] or [None])[0],
                "is_series_master": r["m365_is_series_master"],
            }
            for r in rows
            if not r["m365_is_cancelled"]
        ]

    def edit_meeting(self, row: dict[str, Any], changes: dict[str, Any]) -> None:
        values: dict[str, Any] = {}
        if "subject" in changes:
            values["name"] = changes["subject"]
        if "start" in changes:
            values["start"] = changes["start"].astimezone(UTC).strftime(ODOO_TIME)
            values["stop"] = changes["end"].astimezone(UTC).strftime(ODOO_TIME)
        if "attendees" in changes:
            values["partner_ids"] = [(6, 0, [pid for pid, _e, _n in changes["attendees"]])]
        self.user.execute_kw("calendar.event", "write", [[row["id"]], values])

    def delete_meeting(self, row: dict[str, Any]) -> None:
        self.user.execute_kw("calendar.event", "unlink", [[row["id"]]])

    def queue_mail(self, partner: tuple[int, str, str], subject: str) -> int:
        pid, email, name = partner
        return self.user.execute_kw(
            "m365.outbox", "create",
            [{"account_id": self.account_id, "partner_id": pid,
              "email_to": f'"{name.replace(chr(34), "")}" <{email}>', "subject": subject,
              "body_html": f"<p>{subject}: the figures you asked for.</p>"}],
        )  # fmt: skip

    def outbox(self) -> dict[int, Any]:
        rows = self.admin.execute_kw(
            "m365.outbox", "search_read", [[("account_id", "=", self.account_id)]],
            {"fields": ["state", "error", "graph_id", "internet_message_id"]},
        )  # fmt: skip
        return {
            r["id"]: SimpleNamespace(
                state=OutboxState(r["state"]),
                error=r["error"] or None,
                graph_id=r["graph_id"] or None,
                internet_message_id=r["internet_message_id"] or None,
            )
            for r in rows
        }

    def retry_mail(self, mail_id: int) -> None:
        self.user.execute_kw("m365.outbox", "action_retry", [[mail_id]])

    def stored_mail(self) -> list[dict[str, Any]]:
        links = self.admin.execute_kw(
            "m365.mail.message.link", "search_read", [[("account_id", "=", self.account_id)]],
            {"fields": ["graph_id", "folder_id", "message_id"]},
        )  # fmt: skip
        ids = sorted({link["message_id"][0] for link in links})
        messages = {
            m["id"]: m
            for m in self.admin.execute_kw(
                "m365.mail.message", "read", [ids], {"fields": ["internet_message_id", "subject"]}
            )
        }
        return [
            {
                "graph_id": link["graph_id"],
                "folder_id": link["folder_id"],
                "internet_message_id": messages[link["message_id"][0]]["internet_message_id"]
                or None,
                "subject": messages[link["message_id"][0]]["subject"] or None,
                "message_id": link["message_id"][0],
            }
            for link in links
        ]

    def message_count(self) -> int:
        # A shared database holds other runs' mail: the account's own distinct messages.
        return len({row["message_id"] for row in self.stored_mail()})

    def calendar(self, low: datetime, high: datetime) -> dict[str, Any]:
        rows = self._events(["name", "start", "stop", "partner_ids", "recurrence_id",
                             "m365_is_series_master", "m365_series_master_id",
                             "m365_is_cancelled", "user_id"])  # fmt: skip
        partners = {
            p["id"]: (p["email"] or "").lower()
            for p in self.admin.execute_kw(
                "res.partner", "read",
                [sorted({pid for r in rows for pid in r["partner_ids"]})], {"fields": ["email"]},
            )
        }  # fmt: skip
        owner = self.admin.execute_kw(
            "res.users", "read", [[self.user_id]], {"fields": ["partner_id"]}
        )[0]["partner_id"][0]
        groups: dict[str, Counter] = {}
        for r in rows:
            if r["m365_is_series_master"] or r["m365_is_cancelled"]:
                continue
            start = datetime.strptime(r["start"], ODOO_TIME).replace(tzinfo=UTC)
            end = datetime.strptime(r["stop"], ODOO_TIME).replace(tzinfo=UTC)
            if end <= low or start >= high:
                continue
            people = frozenset(partners[p] for p in r["partner_ids"] if p != owner)
            if r["m365_series_master_id"]:
                group = f"m365-{r['m365_series_master_id'][0]}"
            elif r["recurrence_id"]:
                group = f"odoo-{r['recurrence_id'][0]}"
            else:
                group = f"event-{r['id']}"
            groups.setdefault(group, Counter())[(r["name"] or "", start, end, people)] += 1
        return groups

    def misbehave(self, rng: random.Random) -> str | None:
        return self.proxy.misbehave(rng)

    def calm(self) -> None:
        self.proxy.calm()

    def clean_up(self) -> None:
        """Delete what the run made: the account (its mail, bindings, outbox go with it), its
        events, its user."""
        with contextlib.suppress(Exception):
            self.user.close()
        found = self.admin.execute_kw(
            "calendar.event", "search",
            [["|", "|", ("id", "in", self.event_ids),
              ("m365_owner_account_id", "=", self.account_id),
              ("m365_binding_ids.account_id", "=", self.account_id)]],
            {"context": {"active_test": False}},
        )  # fmt: skip
        self.admin.execute_kw("m365.account", "unlink", [[self.account_id]])
        if found:
            self.admin.execute_kw("calendar.event", "unlink", [found])
        self.admin.execute_kw("res.users", "write", [self.user_ids, {"active": False}])
        self.admin.close()


def odoo_world(tmp_path: Path, mailbox: Mailbox) -> tuple[Any, OdooCrm, Daemon, FaultProxy]:
    """Emulator, fault proxy, the daemon's configuration with Odoo (through the proxy) as the
    store and the calendar on, a connected account owned by a fresh salesperson."""
    from m365sync.emulator.server import Emulator
    from tests.e2e.conftest import load, odoo_environ, write_config

    tmp_path.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(mailbox, state_dir=tmp_path / "emulator")
    emulator.start()
    proxy = FaultProxy(os.environ["ODOO_URL"])
    path = write_config(tmp_path, emulator, odoo_url=proxy.url, calendar=True)
    # The person's own sign-in and the final comparison reach Odoo directly.
    direct = write_config(
        tmp_path, emulator, odoo_url=os.environ["ODOO_URL"], calendar=True, name="direct.toml"
    )
    crm = OdooCrm(direct, load(direct), mailbox, proxy)
    daemon = Daemon(path, tmp_path / "daemon.log", env_extra=odoo_environ())
    return emulator, crm, daemon, proxy
