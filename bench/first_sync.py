"""First sync of a whole mailbox, ours against the peer's strategy, under a latency model.

One emulator per mailbox size (its own process, seeded once: Inbox and Sent Items); per run a
fresh embedded store that knows the mailbox's contacts and companies, connected through the
real code flow. The emulator's latency model (``--latency-ms``, ``--per-item-ms``: each Graph
answer is held that long plus that much per item it returns, as real Graph is slower than
loopback) is set for each block of runs. Strategies:

- ``peer``: Twenty's (bench/peer_twenty.py): ids-only delta pages of 999, then ``$batch`` of
  20 GETs; fetch only, nothing stored, no attachments;
- ``read``: our delta pages at the page size, parsed, nothing stored, no attachments, the
  folders side by side as the full cycle reads them (service/lanes.py): the floor a full
  cycle is measured against;
- ``ours``: a full mail cycle into the embedded store (sync_account_mail; calendar off).

Printed per run: wall time, this process's CPU time (the client's own work, which other
processes on a shared machine slow less than the wall time), Graph round trips (HTTP requests
to /v1.0, a ``$batch`` envelope counting once), requests counted against the mailbox (every
Graph request, each request inside a batch counting on its own and the envelope not at all:
Graph evaluates "requests in a batch individually against the applicable throttling limits"),
token requests, messages, messages per second of wall time (for ``ours``: messages stored
into the embedded store), and the process's peak resident memory during the run.

The peer's run is bounded by ``--peer-budget`` seconds (default 600): 100,000 messages under
the latency model would take it about half an hour. A bounded run stops sending envelopes at
the budget; its row is marked ``bounded`` and its wall time, round trips and mailbox requests
are extrapolated linearly to all the messages its delta pages listed (its cost is one
envelope per 20 messages, so linear is what it is).

Usage: python bench/first_sync.py [--sizes 10000] [--latency 300:2 --latency 0:0]
       [--page-sizes 100,500] [--strategies peer,read,ours] [--peer-budget 600]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from m365sync.config import load_config
from m365sync.crm.sqlite import SqliteGateway
from m365sync.demo import seed_crm
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.lanes import run_lanes
from m365sync.service.runtime import Runtime
from mail_sync import RssSampler, free_port, start_emulator
from peer_twenty import PEER_PAGE_SIZE, peer_fetch

TOKEN_PATH = "/oauth2/v2.0/token"


class Bench:
    """One emulator process and what a run needs to talk to it."""

    def __init__(self, size: int, workdir: Path, peer_budget: float | None = None) -> None:
        self.size = size
        self.peer_budget = peer_budget
        self.workdir = workdir
        self.process, self.config_path = start_emulator(size, workdir)
        self.base = self.config_path.read_text()
        self.seed = Mailbox.seeded(size=size, seed=1)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        config = load_config(self.config_path, environ={})
        answer = requests.request(
            method,
            f"{config.microsoft.authority_host}/_emulator/{path}",
            verify=config.microsoft.ca_bundle,
            timeout=120,
            **kwargs,
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def set_latency(self, latency_ms: float, per_item_ms: float) -> None:
        self.control("POST", "latency", json={"latency_ms": latency_ms, "per_item_ms": per_item_ms})

    def run(self, strategy: str, page_size: int | None, run_id: int) -> dict[str, Any]:
        store_path = self.workdir / f"store-{run_id}.sqlite3"
        config_path = self.workdir / f"run-{run_id}.toml"
        text = self.base.replace(
            'redirect_uri = "http://localhost:8400/"',
            f'redirect_uri = "http://localhost:{free_port()}/"',
        )
        text = text.replace(str(self.workdir / "store.sqlite3"), str(store_path))
        text += "initial_window_days = 0\ncalendar = false\n"
        if page_size is not None:
            text += f"page_size = {page_size}\n"
        config_path.write_text(text)
        config = load_config(config_path, environ={}).validate()
        store = SqliteGateway(config.store.sqlite_path())
        seed_crm(store, self.seed, share=0.7)
        runtime = Runtime.build(config, store)
        try:
            account = connect_account(runtime, browser="follow")
            # The emulator keeps its last 100,000 requests: slicing a longer log by a count
            # taken before the run would miss this run's records, so the log starts empty.
            self.control("DELETE", "requests")
            sampler = RssSampler()
            sampler.start()
            started, cpu = time.perf_counter(), time.process_time()
            messages, listed, fixed = self._strategy(strategy, runtime, store, account)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            sampler.stop()
            records = self.control("GET", "requests")["value"]
        finally:
            runtime.close()
        graph = [r for r in records if r["path"].startswith("/v1.0/")]
        row = {
            "strategy": strategy,
            "page_size": PEER_PAGE_SIZE if strategy == "peer" else config.sync.page_size,
            "seconds": seconds,
            "cpu": cpu,
            "round_trips": sum(1 for r in graph if not r.get("in_batch")),
            "quota": sum(1 for r in graph if r.get("in_batch") or r["path"] != "/v1.0/$batch"),
            "tokens": sum(1 for r in records if r["path"].endswith(TOKEN_PATH)),
            "messages": messages,
            "rss_peak_mb": sampler.peak,
            "bounded": messages < listed,
        }
        if row["bounded"]:
            # Listing was done whole; the fetching left costs what the fetching done cost,
            # per message (one envelope per 20).
            scale = listed / max(messages, 1)
            pages, listing_s = fixed
            row["seconds"] = listing_s + (seconds - listing_s) * scale
            row["cpu"] *= scale
            for name in ("round_trips", "quota"):
                row[name] = pages + round((row[name] - pages) * scale)
            row["messages"] = listed
        return row

    def _strategy(
        self, strategy: str, runtime: Runtime, store: SqliteGateway, account: Any
    ) -> tuple[int, int, tuple[int, float]]:
        """(messages handled, messages listed, (listing requests, listing seconds)): the
        first two differ only for a bounded peer, the last matters only then."""
        folders = runtime.config.sync.mail_folders
        graph = runtime.graph_for(account)
        reader = runtime.mail_reader_for(account, graph)
        if strategy == "peer":
            peer = peer_fetch(graph, reader, folders, budget_s=self.peer_budget)
            return peer.fetched, peer.listed, (peer.pages, peer.listing_s)
        if strategy == "read":
            seen = [0]
            lock = threading.Lock()

            def read(ref: str, _stop: threading.Event) -> None:
                for page in reader.pages(reader.resolve_folder(ref).graph_id):
                    with lock:
                        seen[0] += len(page.messages)

            run_lanes(folders, read)
            return seen[0], seen[0], (0, 0.0)
        result = sync_account_mail(runtime, store.get_account(account.id))
        if result.error:
            raise SystemExit(f"the cycle failed: {result.error}")
        return result.imported, result.imported, (0, 0.0)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--latency", action="append", help="MS:PER_ITEM_MS (default 300:2, 0:0)")
    parser.add_argument("--page-sizes", default="default", help="e.g. 100,500 (default: config's)")
    parser.add_argument("--strategies", default="peer,read,ours")
    parser.add_argument("--peer-budget", type=float, default=600.0, help="seconds (0: none)")
    args = parser.parse_args()
    latencies = [
        tuple(float(x) for x in spec.split(":")) for spec in args.latency or ["300:2", "0:0"]
    ]
    page_sizes = [None if p == "default" else int(p) for p in args.page_sizes.split(",")]
    strategies = args.strategies.split(",")
    run_id = 0
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            bench = Bench(size, Path(tmp), args.peer_budget or None)
            try:
                for latency_ms, per_item_ms in latencies:
                    bench.set_latency(latency_ms, per_item_ms)
                    print(
                        f"\n{size:,} messages (Inbox and Sent Items), latency model "
                        f"{latency_ms:g} ms per request + {per_item_ms:g} ms per item"
                    )
                    print(
                        f"{'strategy':<10} {'page':>5} {'wall s':>8} {'CPU s':>6} "
                        f"{'round trips':>11} {'mailbox req':>11} {'token req':>9} "
                        f"{'messages':>8} {'msg/s':>6} {'RSS MB':>7}  note"
                    )
                    walls: dict[str, float] = {}
                    for strategy in strategies:
                        sizes = [None] if strategy == "peer" else page_sizes
                        for page_size in sizes:
                            run_id += 1
                            row = bench.run(strategy, page_size, run_id)
                            walls.setdefault(strategy, row["seconds"])
                            print(
                                f"{row['strategy']:<10} {row['page_size']:>5} "
                                f"{row['seconds']:>8.1f} {row['cpu']:>6.1f} "
                                f"{row['round_trips']:>11} "
                                f"{row['quota']:>11} {row['tokens']:>9} {row['messages']:>8} "
                                f"{row['messages'] / row['seconds']:>6.0f} "
                                f"{row['rss_peak_mb']:>7.0f}  "
                                + ("bounded: extrapolated" if row["bounded"] else ""),
                                flush=True,
                            )
                    if {"read", "ours"} <= walls.keys():
                        print(f"full cycle / read only: {walls['ours'] / walls['read']:.2f}x")
                    if {"peer", "ours"} <= walls.keys():
                        print(f"peer / full cycle: {walls['peer'] / walls['ours']:.1f}x")
            finally:
                bench.close()


if __name__ == "__main__":
    main()
