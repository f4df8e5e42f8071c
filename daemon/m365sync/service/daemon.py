"""`m365sync run`: the long-running service, one process being one replica.

Every ``tick_seconds`` the replica leases the free accounts (`CrmGateway.lease_accounts`, atomic
in the store, with expiry so a dead replica's accounts move on), keeps those whose mail cycle
is due (or whose outbox has queued mail) while it has free workers, and releases the rest at
once. Each kept account runs in a bounded thread pool, so one slow account never blocks the
others; a heartbeat thread renews the leases of running work, and the lease is passed into
the cycle so every page write checks it (`LeaseLost` ends that account's work quietly).
Connect redemption, free/busy answers and the daemon's published info run on their own
intervals. SIGTERM/SIGINT stops leasing, lets running pages finish (each page and its cursor
are stored atomically), releases the leases and exits 0.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from m365sync.config import ServiceConfig
from m365sync.domain import Account, AccountStatus, Lease, Subscription
from m365sync.errors import ConfigError, CrmError, LeaseLost, M365SyncError, advice_for
from m365sync.graph.send import MailSender
from m365sync.graph.subscriptions import LIFETIME
from m365sync.service.account_sync import LEASE_GIVEN_UP, sync_account_mail
from m365sync.service.health import HealthServer, Metrics
from m365sync.service.mail_cycle import PageProgress
from m365sync.service.notify_server import NotificationEndpoint, NotificationServer
from m365sync.service.outbox_cycle import send_outgoing
from m365sync.service.push_cycle import push_target
from m365sync.service.runtime import Runtime
from m365sync.sync.notifications import poll_interval, renewal_due
from m365sync.sync.staleness import is_stale, stale_after

log = logging.getLogger(__name__)

PUSH_CACHE_SECONDS = 30.0
STALE_CHECK_SECONDS = 60.0
SECRET_CHECK_SECONDS = 6 * 3600.0
BACKOFF_CAP = timedelta(hours=1)


class ShuttingDown(LeaseLost):
    """Raised between pages when the service stops: the page and its cursor are stored, the
    account's lease is released, and another replica (or the next start) goes on from there."""

    still_held = True  # unlike a lost lease, this worker may still say why the cycle stopped


def _default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ServiceOptions(ServiceConfig):
    """The service's settings as one replica runs with them: the ``[service]`` section (its
    fields and defaults, `config.ServiceConfig`), then the flags of `m365sync run`; the holder
    defaults to host:pid."""

    holder: str = field(default_factory=_default_holder)

    @classmethod
    def from_config(cls, service: ServiceConfig, **given: object) -> ServiceOptions:
        """The ``[service]`` section (with its ``M365SYNC_SERVICE__*`` overrides), then the
        flags given (None = not given)."""
        values = {f.name: getattr(service, f.name) for f in fields(ServiceConfig)}
        if not values["holder"]:
            del values["holder"]
        values.update({name: value for name, value in given.items() if value is not None})
        options = cls(**values)
        if options.workers < 1 or options.tick_seconds <= 0 or options.lease_ttl_seconds <= 0:
            raise ConfigError("service workers, tick and lease TTL must be positive.")
        if not _is_loopback(options.health_host):
            raise ConfigError(
                f"The health and metrics port must listen on loopback, not {options.health_host!r}."
            )
        return options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def backoff(interval: timedelta, failures: int) -> timedelta:
    """The wait before the next cycle of an account that failed ``failures`` cycles in a row:
    the interval, doubled from the second failure on, at most BACKOFF_CAP (or the interval, if
    that is longer). Sync now and notifications do not wait for it."""
    if failures <= 1:
        return interval
    return max(interval, min(interval * 2 ** (failures - 1), BACKOFF_CAP))


# --- systemd ---------------------------------------------------------------------------------


def sd_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd (``Type=notify``) how we are, over the ``NOTIFY_SOCKET`` datagram socket.
    Without the variable (not under systemd) this does nothing."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as error:
        log.debug("sd_notify failed: %s", error)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half the ``WatchdogSec`` systemd gave us, in seconds (systemd's own advice)."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


# --- logs ------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ``extra`` fields the
    service adds (holder, account, figures) - never tokens or bodies, which are never logged."""

    STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self.STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def use_json_logs(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min(root.level, level) if root.level else level)
    logging.getLogger("m365sync").setLevel(level)


# --- outbox ----------------------------------------------------------------------------------


def send_held_outbox(runtime: Runtime, account: Account, lease: Lease) -> dict[str, int]:
    """The outbox of one account this replica holds the lease of (`send_all_outboxes` sends for
    every account, which is right for one process and wrong for several)."""
    if lease.account_id != account.id:
        raise LeaseLost(f"lease {lease.token} is not for account {account.id}")
    if account.status in (AccountStatus.PAUSED, AccountStatus.NEEDS_RECONNECT):
        return {}
    return dict(send_outgoing(runtime.gateway, MailSender(runtime.graph_for(account)), account))


# --- the service -----------------------------------------------------------------------------


@dataclass
class _Job:
    lease: Lease
    kind: str  # "cycle" | "outbox"
    future: Future | None = None
    lost: bool = False


class Service:
    """One replica. `run` blocks until `stop` (or a signal) and returns the exit code."""

    def __init__(
        self,
        runtime: Runtime,
        options: ServiceOptions,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.options = options
        runtime.holder = options.holder  # claims of connects and free/busy carry it too
        self.metrics = metrics or Metrics()
        self.now = clock
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._outbox_checked: dict[int, float] = {}
        self._push_cache: dict[int, tuple[float, list[Subscription]]] = {}
        self._stale: set[int] = set()
        self._failures: dict[int, int] = {}  # consecutive failed cycles per account (backoff)
        self.wake = threading.Event()  # set by the notification endpoint: tick now
        self.notifications: NotificationServer | None = None
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="m365sync-account")
        self._last_loop = time.monotonic()
        self.last_cycle_at: datetime | None = None
        self.health: HealthServer | None = None

    # --- health ---

    def status(self) -> dict[str, object]:
        stuck_after = 3 * max(self.options.tick_seconds, 1.0)
        stuck = time.monotonic() - self._last_loop > stuck_after
        with self._lock:
            held = len(self._jobs)
        return {
            "status": "stopping" if self.stopping.is_set() else ("stuck" if stuck else "ok"),
            "holder": self.options.holder,
            "accounts_held": held,
            "last_cycle_at": self.last_cycle_at.isoformat() if self.last_cycle_at else None,
        }

    # --- the loop ---

    def run(self) -> int:
        import schedule

        opts = self.options
        if opts.health_port >= 0:
            self.health = HealthServer(
                opts.health_host, opts.health_port, self.status, self.metrics
            ).start()
            log.info(
                "health on http://%s:%s/healthz",
                opts.health_host,
                self.health.port,
                extra={"event": "health", "port": self.health.port, "holder": opts.holder},
            )
        self._start_notifications()
        heartbeat = threading.Thread(target=self._heartbeat, name="m365sync-heartbeat", daemon=True)
        heartbeat.start()
        jobs = schedule.Scheduler()
        jobs.every(opts.tick_seconds).seconds.do(self._guard, "lease", self.tick)
        jobs.every(opts.connect_interval_seconds).seconds.do(self._guard, "connect", self._connects)
        jobs.every(opts.free_busy_interval_seconds).seconds.do(
            self._guard, "free_busy", self._free_busy
        )
        jobs.every(opts.info_interval_seconds).seconds.do(self._guard, "info", self._publish)
        jobs.every(STALE_CHECK_SECONDS).seconds.do(self._guard, "stale", self.watch_staleness)
        jobs.every(SECRET_CHECK_SECONDS).seconds.do(self._guard, "secret", self.check_secret)
        self._guard("secret", self.check_secret)
        self._guard("info", self._publish)
        self._guard("connect", self._connects)
        self._guard("lease", self.tick)
        sd_notify(f"READY=1\nSTATUS=holder {opts.holder}\nMAINPID={os.getpid()}")
        log.info("service started", extra={"event": "started", "holder": opts.holder})
        watchdog = watchdog_interval()
        last_ping = 0.0
        while not self.stopping.is_set():
            jobs.run_pending()
            self._last_loop = time.monotonic()
            if watchdog and self._last_loop - last_ping >= watchdog:
                sd_notify("WATCHDOG=1")
                last_ping = self._last_loop
            if self.wake.wait(min(0.2, opts.tick_seconds)) and not self.stopping.is_set():
                self.wake.clear()  # a notification asked for a cycle: lease now, not later
                self._guard("lease", self.tick)
        log.info("stopping", extra={"event": "stopping", "holder": opts.holder})
        sd_notify("STOPPING=1")
        return self._shutdown(heartbeat)

    def _start_notifications(self) -> None:
        """The daemon's own notification endpoint, when configured (``notifications.
        listen_port``); with Odoo the addon's endpoint receives them instead."""
        push = self.runtime.config.notifications
        if push.listen_port < 0 or not push.enabled:
            return

        def asked(account_ids: list[int]) -> None:
            self.metrics.notifications.labels(outcome="accepted").inc(len(account_ids))
            self.wake.set()

        endpoint = NotificationEndpoint(self.runtime.gateway, asked)
        self.notifications = NotificationServer(endpoint, push.listen_host, push.listen_port)
        self.notifications.start()
        log.info(
            "notification endpoint on %s (Graph posts to %s)",
            self.notifications.url,
            push.url or "the URL in the CRM's settings",
            extra={"event": "notifications", "port": self.notifications.port},
        )

    def stop(self, *_args: object) -> None:
        """Ask the loop to stop; it says so and shuts down. Only sets the event: as a signal
        handler this runs between any two bytecodes of the main thread, in the middle of an
        import or of a log line, where logging may raise (the reliability soak saw SIGTERM land
        while ``rich.table`` was half imported: the "stopping" line raised ImportError before
        the event was set, and the daemon ran on until killed)."""
        self.stopping.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _shutdown(self, heartbeat: threading.Thread) -> int:
        self._pool.shutdown(wait=True)  # running pages finish; the cycles stop between pages
        heartbeat.join(timeout=self.options.lease_ttl_seconds)
        with self._lock:
            left = list(self._jobs.values())
            self._jobs.clear()
        for job in left:
            self._release(job.lease)
        self.metrics.leases_held.set(0)
        if self.health:
            self.health.stop()
        if self.notifications:
            self.notifications.stop()
        log.info("service stopped", extra={"event": "stopped", "holder": self.options.holder})
        return 0

    def _guard(self, kind: str, job: Callable[[], object]) -> None:
        """A scheduled job's failure is logged and counted; the loop goes on."""
        if self.stopping.is_set() and kind != "info":
            return
        try:
            job()
        except Exception as error:  # the loop must outlive any one pass
            self.metrics.errors.labels(kind=f"{kind}:{type(error).__name__}").inc()
            if isinstance(error, M365SyncError):
                log.warning("%s pass: %s", kind, advice_for(error).sentence)
            else:
                log.exception("%s pass failed", kind)

    def _connects(self) -> None:
        from m365sync.service.crm_connect import redeem_pending_connects

        redeem_pending_connects(self.runtime)

    def _free_busy(self) -> None:
        from m365sync.service.free_busy import answer_free_busy

        answer_free_busy(self.runtime)

    def watch_staleness(self) -> list[int]:
        """Accounts that should be syncing and have not for too long (any replica's): counted
        in /metrics and logged once per episode, so an alert can fire on the silent case."""
        runtime = self.runtime
        gap = runtime.mail_interval_seconds()
        if runtime.config.notifications.enabled:
            gap = max(gap, runtime.config.notifications.safety_poll_seconds)
        threshold = stale_after(gap)
        now = self.now()
        stale = [a for a in runtime.gateway.list_accounts() if is_stale(a, now, threshold)]
        self.metrics.stale_accounts.set(len(stale))
        for account in stale:
            if account.id not in self._stale:
                log.warning(
                    "account %s has not synced since %s (more than %s)",
                    account.id,
                    account.last_sync_at,
                    threshold,
                    extra={"event": "stale", "account": account.id},
                )
        self._stale = {a.id for a in stale}
        return sorted(self._stale)

    def check_secret(self) -> bool:
        """The client secret's expiry (``microsoft.client_secret_expires``): a warning from a
        month ahead, an error once it has lapsed (every account then fails to refresh), and
        the date in /metrics for alerting. Odoo's settings page shows the same date."""
        from m365sync.service.checks import secret_expiry_note

        expires = self.runtime.config.microsoft.client_secret_expires
        if expires is not None:
            moment = datetime(expires.year, expires.month, expires.day, tzinfo=UTC)
            self.metrics.secret_expiry.set(moment.timestamp())
        ok, words = secret_expiry_note(expires, self.now().date())
        if not ok:
            level = logging.ERROR if expires and expires < self.now().date() else logging.WARNING
            log.log(level, "client secret %s", words, extra={"event": "client_secret"})
        return ok

    def _publish(self) -> None:
        from m365sync.service.crm_connect import publish_daemon_info

        publish_daemon_info(self.runtime)

    def tick(self) -> list[int]:
        """Lease the free accounts, start the due ones while workers are free, release the
        rest. Returns the account ids started."""
        opts = self.options
        gateway = self.runtime.gateway
        with self._lock:
            free = opts.workers - len(self._jobs)
        if free <= 0 or self.stopping.is_set():
            return []
        leases = gateway.lease_accounts(
            opts.holder, limit=opts.lease_batch, ttl_seconds=opts.lease_ttl_seconds
        )
        started: list[int] = []
        for lease in leases:
            kind = None
            if free > 0 and not self.stopping.is_set():
                try:
                    kind = self._work_for(lease.account_id)
                except CrmError as error:
                    self.metrics.errors.labels(kind="crm").inc()
                    log.warning("account %s: %s", lease.account_id, error)
            if kind is None:
                self._release(lease)
                continue
            job = _Job(lease, kind)
            with self._lock:
                self._jobs[lease.account_id] = job
                self.metrics.leases_held.set(len(self._jobs))
            job.future = self._pool.submit(self._work, job)
            free -= 1
            started.append(lease.account_id)
        return started

    def _work_for(self, account_id: int) -> str | None:
        """What a leased account needs now: its cycle (due by interval, asked for by Sync now
        or a notification, or its subscriptions need renewing), its outbox, or nothing."""
        gateway = self.runtime.gateway
        account = gateway.get_account(account_id)
        now = self.now()
        if account.status_until and account.status_until > now:
            return None  # throttled until then
        last = gateway.last_sync_run(account_id)
        if last is None:
            return "cycle"
        if account.sync_requested_at and account.sync_requested_at >= _second(last.started_at):
            # A request made after the last cycle started. Compared to the second: a CRM that
            # keeps whole seconds must not make a request in that second look older than the
            # cycle (the cost is at most one extra cycle).
            return "cycle"
        if (last.finished_at or last.started_at) + self._interval(account_id, now) <= now:
            return "cycle"
        mono = time.monotonic()
        every = self.runtime.config.sync.outbox_interval_seconds
        if mono - self._outbox_checked.get(account_id, 0.0) >= every:
            self._outbox_checked[account_id] = mono
            if gateway.outgoing_mail(account_id, limit=1):
                return "outbox"
        return None

    def _interval(self, account_id: int, now: datetime) -> timedelta:
        """The normal poll, or the slower safety poll while the account's subscriptions are
        live; a subscription due for renewal makes the cycle due at once."""
        normal = backoff(
            timedelta(seconds=self.runtime.mail_interval_seconds()),
            self._failures.get(account_id, 0),
        )
        target = push_target(
            self.runtime.config,
            self.runtime.crm_settings(),
            calendar=self.runtime.config.sync.calendar,
        )
        if target is None:
            return normal
        subscriptions = self._subscriptions(account_id)
        if renewal_due(subscriptions, now, lifetime=LIFETIME):
            return timedelta(0)
        safety = timedelta(seconds=self.runtime.config.notifications.safety_poll_seconds)
        return poll_interval(
            subscriptions, len(target.kinds), now, normal=normal, with_push=max(safety, normal)
        )

    def _subscriptions(self, account_id: int) -> list[Subscription]:
        """Read at most every few ticks per account: they change only in cycles (ours or
        another replica's) and by lifecycle notifications, which also ask for a cycle."""
        mono = time.monotonic()
        cached = self._push_cache.get(account_id)
        if cached and mono - cached[0] < PUSH_CACHE_SECONDS:
            return cached[1]
        found = self.runtime.gateway.subscriptions(account_id)
        self._push_cache[account_id] = (mono, found)
        return found

    def _work(self, job: _Job) -> None:
        account_id = job.lease.account_id
        holder = self.options.holder
        try:
            account = self.runtime.gateway.get_account(account_id)
            if job.kind == "outbox":
                outcome = send_held_outbox(self.runtime, account, job.lease)
                for name, n in outcome.items():
                    self.metrics.sends.labels(outcome=name).inc(n)
                return
            started = self.now()

            def on_page(progress: PageProgress) -> None:
                self.metrics.pages.inc()
                if self.stopping.is_set():
                    raise ShuttingDown(f"the service stops; account {account_id} resumes later")

            log.info(
                "cycle started",
                extra={"event": "cycle_start", "holder": holder, "account": account_id},
            )
            run = sync_account_mail(self.runtime, account, lease=job.lease, on_page=on_page)
            ended = self.now()
            self.metrics.messages_imported.inc(run.imported)
            for name, n in (run.outbox or {}).items():
                self.metrics.sends.labels(outcome=name).inc(n)
            outcome = "ok" if not run.error else "error"
            if run.error and (run.error == LEASE_GIVEN_UP or self.stopping.is_set()):
                outcome = "handed_over"
            elif run.error:
                self.metrics.errors.labels(kind="cycle").inc()
            if outcome == "ok":
                self._failures.pop(account_id, None)
            elif outcome == "error":
                self._failures[account_id] = failures = self._failures.get(account_id, 0) + 1
                if failures > 1:
                    log.info(
                        "account %s failed %d cycles in a row; next attempt in %s",
                        account_id,
                        failures,
                        backoff(timedelta(seconds=self.runtime.mail_interval_seconds()), failures),
                        extra={"event": "backoff", "account": account_id},
                    )
            self.metrics.cycles.labels(outcome=outcome).inc()
            self.last_cycle_at = ended
            self.metrics.last_cycle.set(ended.timestamp())
            log.info(
                "cycle finished",
                extra={
                    "event": "cycle_end",
                    "holder": holder,
                    "account": account_id,
                    "started": started.isoformat(),
                    "ended": ended.isoformat(),
                    "outcome": outcome,
                    "imported": run.imported,
                    "pages": run.pages,
                    "lease_token": job.lease.token,
                },
            )
        except Exception as error:  # one account never stops the others
            self.metrics.errors.labels(kind=type(error).__name__).inc()
            log.warning("account %s: %s", account_id, error)
        finally:
            self._push_cache.pop(account_id, None)  # the cycle may have changed them
            with self._lock:
                current = self._jobs.pop(account_id, None)
                self.metrics.leases_held.set(len(self._jobs))
            if current is not None and not current.lost:
                self._release(current.lease)

    def _heartbeat(self) -> None:
        """Renew the leases of running work every third of the TTL."""
        every = self.options.lease_ttl_seconds / 3
        while True:
            if self.stopping.is_set():
                with self._lock:
                    if not self._jobs:
                        return
                time.sleep(min(every, 0.5))
            else:
                self.stopping.wait(every)
            with self._lock:
                jobs = list(self._jobs.values())
            for job in jobs:
                if job.lost:
                    continue
                try:
                    job.lease = self.runtime.gateway.renew_lease(
                        job.lease, ttl_seconds=self.options.lease_ttl_seconds
                    )
                except LeaseLost:
                    job.lost = True
                    self.metrics.leases_lost.inc()
                    log.info(
                        "lease lost",
                        extra={
                            "event": "lease_lost",
                            "holder": self.options.holder,
                            "account": job.lease.account_id,
                        },
                    )
                except CrmError as error:
                    self.metrics.errors.labels(kind="renew").inc()
                    log.warning("lease of account %s not renewed: %s", job.lease.account_id, error)

    def _release(self, lease: Lease) -> None:
        try:
            self.runtime.gateway.release_lease(lease)
        except CrmError as error:  # it expires on its own
            log.warning("lease of account %s not released: %s", lease.account_id, error)


def run_service(runtime: Runtime, options: ServiceOptions) -> int:
    """Build the service, install the signal handlers, run until stopped."""
    service = Service(runtime, options)
    service.install_signals()
    try:
        return service.run()
    finally:
        runtime.close()
