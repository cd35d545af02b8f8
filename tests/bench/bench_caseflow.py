"""The node's local case flow over mTLS: a hit/no-hit round and an uitvraag through CaseService.

Two whole in-process nodes (policy, pseudonyms, SQLite audit log and case
registry in a temporary directory) on loopback; three simulated partner
systems (politie, ggz, gemeente) answer through the real adapter runner
over their task streams, all in this one process and event loop. The
baseline is a grpc health Check on a bare grpc.aio server with the same
mTLS credentials.

- ``round``: CaseService.RunHitNoHit: audit, transcryption to the 2
  partners other than the referrer and to 1 peer node, 2 task round trips,
  2 policy decisions and audited answers, the peer's federated hit/no-hit,
  and the hits recorded.
- ``uitvraag``: CaseService.StartUitvraag for 3 categories over 3
  providers (consent recorded for ggz): 9 decisions, 3 FACT_QUERY round
  trips, facts sealed in the
  vault, per-recipient minimisation, one audit record per decision, and
  the FACT_DELIVERY tasks handed to the recipients' streams.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from schakel.v1 import case_pb2, case_pb2_grpc

from gateway.tls import ServerCertificates, channel_credentials, node_channel
from tests.bench.harness import (
    Call,
    Result,
    latency_results,
    measure_calls,
    percentiles_ms,
    run_in_temp_dir,
)
from tests.support.caseflow import (
    ANTECEDENTEN,
    HUISVESTING,
    IN_ZORG,
    PARTICIPANTS,
    accept,
    open_case,
    partners,
)
from tests.support.flow import Flow, partner_sections
from tests.support.pair import start_pair, stop_pair
from tests.support.pki import RR
from tests.support.referrals import PURPOSE

AREA = "caseflow"
REPEATS = 3
CHECKPOINT_EVERY_RECORDS = 1000
"""The default of ``[audit] checkpoint_every_records``."""
PLAN = {"baseline": (1000, 16), "round": (150, 8), "uitvraag": (100, 8)}
"""(name, calls per repeat, calls in flight)."""


async def _series(name: str, call: Call) -> dict[str, float]:
    """Median rate under load, and p50/p99 (ms) one call at a time."""
    total, in_flight = PLAN[name]
    await measure_calls(call, max(in_flight, total // 10), in_flight)
    rates = [(await measure_calls(call, total, in_flight))[0] for _ in range(REPEATS)]
    _rate, alone = await measure_calls(call, max(20, total // 4), 1)
    p50, p99 = percentiles_ms(alone)
    return {"rate": statistics.median(rates), "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}


@contextlib.asynccontextmanager
async def case_calls(root: Path) -> AsyncIterator[dict[str, Call]]:
    """The running pair with its partners, and one call per row: baseline, round, uitvraag.

    Also what :mod:`tests.bench.profile` samples, so a flame graph shows
    exactly the call the table measures.
    """
    # A node's checkpoint cadence as deployed (every 1000 records or 60 s), not the
    # test pair's checkpoint per record, which would put a signature and a witness
    # round into every measured call.
    pair = await start_pair(
        root,
        f"sqlite:///{root / 'rr.db'}",
        partner_sections,
        checkpoint_every_records=CHECKPOINT_EVERY_RECORDS,
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            flow = Flow(pair, stack)
            sims = partners()
            for org_id, org_type in PARTICIPANTS:
                await flow.run_partner(RR, org_id, org_type, sims[org_id])
            round_ref = await open_case(flow, "bench-round")
            uitvraag_ref = await open_case(flow, "bench-uitvraag")
            officer = pair.fed.officer(RR, "procesregisseur")
            channel = pair.channel(RR, officer)
            stack.push_async_callback(channel.close, None)
            stub = case_pb2_grpc.CaseServiceStub(channel)
            await accept(stub, uitvraag_ref)
            await stub.RecordGround(
                case_pb2.RecordGroundRequest(
                    purpose=PURPOSE,
                    case_ref=uitvraag_ref,
                    kind=case_pb2.GROUND_KIND_CONSENT,
                    category=IN_ZORG,
                    provider_org_id="ggz-rr",
                    evidence_ref="BENCH-1",
                )
            )

            server = grpc.aio.server()
            health = health_aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health, server)
            bare = pair.fed.node("zvh-bare", force=True)
            creds = ServerCertificates(pair.fed.ca_file, bare.cert_file, bare.key_file)
            port = server.add_secure_port("127.0.0.1:0", creds.credentials())
            await server.start()
            stack.push_async_callback(server.stop, None)
            await health.set("", health_pb2.HealthCheckResponse.SERVING)
            bare_channel = node_channel(
                f"127.0.0.1:{port}",
                "zvh-bare",
                channel_credentials(pair.fed.ca_file, officer.cert_file, officer.key_file),
            )
            stack.push_async_callback(bare_channel.close, None)
            check = health_pb2.HealthCheckRequest()
            health_stub = health_pb2_grpc.HealthStub(bare_channel)

            async def round_call() -> object:
                result = await stub.RunHitNoHit(
                    case_pb2.RunHitNoHitRequest(
                        purpose=PURPOSE, case_ref=round_ref, deadline_ms=5000
                    )
                )
                if result.unanswered or len(result.hits) != 2:
                    raise RuntimeError(f"round incomplete: {list(result.unanswered)}")
                return result

            async def uitvraag_call() -> object:
                result = await stub.StartUitvraag(
                    case_pb2.StartUitvraagRequest(
                        purpose=PURPOSE,
                        case_ref=uitvraag_ref,
                        categories=[ANTECEDENTEN, IN_ZORG, HUISVESTING],
                        deadline_ms=10_000,
                    )
                )
                if not all(p.answered for p in result.providers):
                    raise RuntimeError("uitvraag incomplete")
                return result

            yield {
                "baseline": lambda: health_stub.Check(check, timeout=10),
                "round": round_call,
                "uitvraag": uitvraag_call,
            }
    finally:
        await stop_pair(pair)


async def _bench(root: Path) -> list[Result]:
    results: dict[str, dict[str, float]] = {}
    async with case_calls(root) as calls:
        for name, call in calls.items():
            results[name] = await _series(name, call)
    notes = {
        "baseline": "grpc health Check, bare grpc.aio server, same mTLS",
        "round": "CaseService.RunHitNoHit: 2 local partners via task streams + 1 peer node",
        "uitvraag": "CaseService.StartUitvraag: 3 categories, 3 providers, 6 audited "
        "decisions, 4 deliveries",
    }
    return latency_results(AREA, results, notes, {name: plan[1] for name, plan in PLAN.items()})


def run() -> list[Result]:
    """Requests/s and p50/p99 of a round and an uitvraag, with the ratio to the baseline."""
    return run_in_temp_dir(_bench, log_level="warning")
