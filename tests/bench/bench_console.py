"""The officers' console over HTTPS with a client certificate: pages per second.

One federation (RR with its console, HL) with one referred case; an
aiohttp client presents the officer's certificate over one kept-alive
TLS 1.3 connection per request in flight. The baseline is the style
sheet: TLS, the certificate and role checks and the security headers,
without a flow. A case view also writes its audit record (durably) before
the page is rendered; the audit browser reads the newest records.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from tests.bench.harness import (
    Result,
    latency_results,
    measure_calls,
    percentiles_ms,
    run_in_temp_dir,
)
from tests.support.browser import console_flow
from tests.support.caseflow import open_case
from tests.support.pki import RR

AREA = "console"
REQUESTS = 200
IN_FLIGHT = 4


async def _bench(tmp: Path) -> list[Result]:
    async with console_flow(tmp) as (flow, origin):
        case_id = (await open_case(flow)).case_id
        pages = {
            "baseline": ("fg", "/static/console.css", "the style sheet: TLS and access checks"),
            "case_list": ("procesregisseur", "/zaken", "the case list (no audit record)"),
            "case_view": ("procesregisseur", f"/zaken/{case_id}", "a case, audited first"),
            "audit_browser": ("fg", "/fg/audit", "the newest 200 audit records"),
        }
        officers = {role: flow.pair.fed.officer(RR, role) for role in ("fg", "procesregisseur")}
        measured: dict[str, dict[str, float]] = {}
        notes: dict[str, str] = {}
        for name, (role, path, note) in pages.items():
            officer = officers[role]
            context = ssl.create_default_context(cafile=flow.pair.fed.ca_file)
            context.check_hostname = False
            context.load_cert_chain(officer.cert_file, officer.key_file)
            connector = aiohttp.TCPConnector(ssl=context, limit=IN_FLIGHT)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def get(url: str = origin + path) -> None:
                    async with session.get(url, allow_redirects=False) as answer:
                        await answer.read()
                        assert answer.status == 200, (url, answer.status)

                _, latencies = await measure_calls(get, REQUESTS // 2, 1)
                rate, _ = await measure_calls(get, REQUESTS, IN_FLIGHT)
            p50, p99 = percentiles_ms(latencies)
            measured[name] = {"rate": rate, "p50_ms": p50, "p99_ms": p99}
            notes[name] = note
        return latency_results(AREA, measured, notes, dict.fromkeys(pages, IN_FLIGHT))


def run() -> list[Result]:
    """Pages/s of the console and their p50/p99, against the style sheet."""
    return run_in_temp_dir(_bench, log_level="warning")
