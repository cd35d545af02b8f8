"""A case walked through two nodes shows in the Prometheus page of the node's admin port.

RR gets an ``[admin]`` port; its partners answer hit/no-hit and uitvraag,
one of them (gemeente-rr) is down when facts are delivered, so a delivery
waits in its queue. The counters are the process's, so the test compares a
scrape before the walk with one after it: every family must have grown.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from schakel.v1 import case_pb2, case_pb2_grpc

from tests.support.caseflow import ANTECEDENTEN, PARTICIPANTS, accept, open_case, partners, regie
from tests.support.flow import partner_sections, running_flow
from tests.support.pki import HL, RR
from tests.support.ports import free_port
from tests.support.referrals import PURPOSE
from tests.support.scrape import get, samples, total
from tests.support.streams import until_streams

COUNTERS = [
    # (family, sample suffix, labels): each must grow during the walk.
    (
        "schakel_rpcs",
        "_total",
        {"method": "/schakel.v1.PartnerService/SubmitReferral", "status": "OK"},
    ),
    ("schakel_rpcs", "_total", {"method": "/schakel.v1.CaseService/StartUitvraag", "status": "OK"}),
    ("schakel_rpc_duration_seconds", "_count", {"method": "/schakel.v1.CaseService/Triage"}),
    ("schakel_audit_append_seconds", "_count", {}),
    ("schakel_audit_batch_records", "_sum", {}),
    ("schakel_checkpoint_cosignatures", "_total", {"witness": HL}),
    ("schakel_partner_tasks_queued", "_total", {"org": "gemeente-rr", "kind": "fact_delivery"}),
    ("schakel_policy_decisions", "_total", {"outcome": "allow"}),
    ("schakel_transcryptions", "_total", {"to": "own"}),
    ("schakel_transcryptions", "_total", {"to": "recipient"}),
]


GAUGES = [
    # (family, labels): each must be above zero after the walk.
    ("schakel_partner_task_queue_depth", {"org": "gemeente-rr", "state": "queued"}),
    ("schakel_audit_records", {}),
    ("schakel_checkpoint_size", {}),
]


async def scrape(port: int) -> tuple[dict[str, float], dict[str, float]]:
    """(the counters the test follows, the levels that must be above zero), by name."""
    found = await asyncio.to_thread(samples, port)
    counters = {f"{n}{s}{labels}": total(found, n, s, **labels) for n, s, labels in COUNTERS}
    levels = {f"{n}{labels}": total(found, n, **labels) for n, labels in GAUGES}
    # The age family is absent while no checkpoint exists (an age of 0 is a fresh one).
    levels["checkpoint age present"] = float("schakel_checkpoint_age_seconds" in found)
    rules = {s.labels["rule"] for s in found.get("schakel_policy_decisions", [])}
    levels["decisions by a named rule"] = float(len(rules - {"none"}))
    return counters, levels


async def test_a_walked_case_shows_in_every_metric_family(tmp_path: Path) -> None:
    port = free_port()

    def sections(node_id: str) -> str:
        admin = f'\n[admin]\nlisten = "127.0.0.1:{port}"\n' if node_id == RR else ""
        return partner_sections(node_id) + admin

    async with running_flow(tmp_path, f"sqlite:///{tmp_path / 'rr.db'}", sections) as flow:
        before, _ = await scrape(port)
        sims = partners()
        types = dict(PARTICIPANTS)
        runners = {o: await flow.run_partner(RR, o, types[o], sims[o]) for o, _ in PARTICIPANTS}
        ref = await open_case(flow)
        async with regie(flow) as channel:
            stub = case_pb2_grpc.CaseServiceStub(channel)
            await accept(stub, ref)
            runners["gemeente-rr"].stop()  # its delivery waits in the queue
            await until_streams(flow, "gemeente-rr", 0)
            await stub.StartUitvraag(
                case_pb2.StartUitvraagRequest(
                    purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN], deadline_ms=3000
                )
            )
        deadline = time.monotonic() + 10
        while True:
            after, levels = await scrape(port)
            missing = [k for k in after if after[k] <= before[k]]
            missing += [k for k, level in levels.items() if level <= 0]
            if not missing:
                break
            # The witness loop cosigns every two seconds: the cosignature may take a moment.
            assert time.monotonic() < deadline, f"did not grow or stayed zero: {missing}"
            await asyncio.sleep(0.2)
        ready = await asyncio.to_thread(get, port, "/readyz")
        assert ready == (200, "ok database\nok policy\nok serving\n")
