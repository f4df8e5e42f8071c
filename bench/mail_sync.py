"""Initial mail sync into the embedded store, measured. Prints figures; asserts nothing.

For each mailbox size the emulator runs in its own process (so its memory is not counted),
seeded with that many messages; this process connects through the real code flow and runs one
full mail cycle with the whole mailbox in the window. Printed per size:

- messages/s stored into the embedded store;
- delta requests made, against the minimum possible at the page size used
  (ceil(items in folder / page size) per folder); all HTTP requests to Graph in the cycle;
  and the requests carried inside JSON batches (attachment metadata, where removed mail
  went), which count against Outlook's per-mailbox quota but cost no round trip;
- CRM round trips per Graph page (gateway calls during the cycle / pages);
- the process's resident memory during the cycle (sampled every 10 ms: its peak, and how much
  it grew over what the process held before the cycle, the seeded CRM included);
- the peak Python heap of the cycle, from a second, separate pass under tracemalloc (tracing
  slows the code it traces about threefold, so the timed pass runs without it).

Usage: python bench/mail_sync.py [SIZE ...]   (default: 1000 10000)
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import requests

from m365sync.config import load_config
from m365sync.crm.sqlite import SqliteGateway
from m365sync.demo import seed_crm
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.runtime import Runtime

PAGE_SIZE = 500


def rss_mb() -> float:
    """This process's resident memory now (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """The peak resident memory while it runs, sampled every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.before = rss_mb()
        self.peak = self.before
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.peak = max(self.peak, rss_mb())


class CountingGateway:
    """Counts calls that reach the CRM (every public gateway method)."""

    def __init__(self, inner: SqliteGateway) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str):
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return target(*args, **kwargs)

        return counted


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_emulator(
    size: int, workdir: Path, mailbox_seed: int | None = None
) -> tuple[subprocess.Popen, Path]:
    """An emulator process seeded with ``size`` messages (``mailbox_seed``: another mailbox
    than the default seed's, with its own Message-IDs); its config file once it serves."""
    config = workdir / "m365sync.toml"
    seed = ["--seed", str(mailbox_seed)] if mailbox_seed is not None else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "m365sync",
            "emulator",
            "--port",
            str(free_port()),
            "--size",
            str(size),
            *seed,
            "--state-dir",
            str(workdir),
            "--write-config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not config.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.2)
    time.sleep(0.2)
    return process, config


def run(size: int, *, traced: bool = False) -> dict[str, float]:
    """One full cycle of a mailbox of ``size`` messages; under tracemalloc when ``traced``."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        process, config_path = start_emulator(size, workdir)
        try:
            text = config_path.read_text() + f"initial_window_days = 0\npage_size = {PAGE_SIZE}\n"
            redirect = f"http://localhost:{free_port()}/"
            text = text.replace(
                'redirect_uri = "http://localhost:8400/"', f'redirect_uri = "{redirect}"'
            )
            config_path.write_text(text)
            config = load_config(config_path, environ={}).validate()
            store = SqliteGateway(config.store.sqlite_path())
            # The CRM knows the mailbox's contacts and companies (same seed as the emulator's).
            seed_crm(store, Mailbox.seeded(size=size, seed=1), share=0.7)
            counting = CountingGateway(store)
            runtime = Runtime.build(config, counting)  # type: ignore[arg-type]
            account = connect_account(runtime, browser="follow")
            before = requests.get(
                f"{config.microsoft.authority_host}/_emulator/requests",
                verify=config.microsoft.ca_bundle,
                timeout=30,
            ).json()
            counting.calls.clear()
            heap_peak = 0
            if traced:
                tracemalloc.start()
            sampler = RssSampler()
            sampler.start()
            started = time.perf_counter()
            result = sync_account_mail(runtime, store.get_account(account.id))
            seconds = time.perf_counter() - started
            sampler.stop()
            if traced:
                _, heap_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            after = requests.get(
                f"{config.microsoft.authority_host}/_emulator/requests",
                verify=config.microsoft.ca_bundle,
                timeout=30,
            ).json()
            records, earlier = after["value"], before["value"]
            delta_requests = [r for r in records[len(earlier) :] if "/messages/delta" in r["path"]]
            graph = [r for r in records[len(earlier) :] if r["path"].startswith("/v1.0/")]
            graph_requests = [r for r in graph if not r.get("in_batch")]
            batched = [r for r in graph if r.get("in_batch")]
            seen_items = result.imported + sum(result.skipped.values())
            reader = runtime.mail_reader_for(account)
            minimum = sum(
                max(1, math.ceil(reader.resolve_folder(ref).total_items / PAGE_SIZE))
                for ref in config.sync.mail_folders
            )
            crm_calls = (
                sum(counting.calls.values())
                - counting.calls["set_account_status"]
                - counting.calls["record_sync_run"]
                - counting.calls["get_account"]
            )
            runtime.close()
            return {
                "size": size,
                "stored": result.imported,
                "skipped": sum(result.skipped.values()),
                "seconds": seconds,
                "msg_per_s": seen_items / seconds if seconds else 0.0,
                "pages": result.pages,
                "graph_requests": len(graph_requests),
                "batched": len(batched),
                "delta_requests": len(delta_requests),
                "minimum_delta_requests": minimum,
                "crm_calls_per_page": crm_calls / max(result.pages, 1),
                "heap_peak_mb": heap_peak / 2**20,
                "rss_peak_mb": sampler.peak,
                "rss_growth_mb": sampler.peak - sampler.before,
            }
        finally:
            process.terminate()
            process.wait(timeout=30)


def main(sizes: list[int]) -> None:
    print(f"Initial mail sync into the embedded store, page size {PAGE_SIZE}")
    header = (
        f"{'messages':>9} {'stored':>7} {'skipped':>7} {'msg/s':>8} {'pages':>6} "
        f"{'delta req':>9} {'minimum':>7} {'HTTP req':>8} {'batched':>7} {'CRM/page':>8} "
        f"{'RSS MB':>7} {'+RSS MB':>7} {'heap MB':>8}"
    )
    print(header)
    for size in sizes:
        row = run(size)
        row["heap_peak_mb"] = run(size, traced=True)["heap_peak_mb"]
        print(
            f"{row['size']:>9} {row['stored']:>7} {row['skipped']:>7} {row['msg_per_s']:>8.0f} "
            f"{row['pages']:>6} {row['delta_requests']:>9} {row['minimum_delta_requests']:>7} "
            f"{row['graph_requests']:>8} {row['batched']:>7} {row['crm_calls_per_page']:>8.1f} "
            f"{row['rss_peak_mb']:>7.0f} {row['rss_growth_mb']:>7.0f} {row['heap_peak_mb']:>8.1f}"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
