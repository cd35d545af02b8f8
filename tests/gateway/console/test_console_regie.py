"""The procesregisseur walks a case from referral to closure in the console, in chromium.

One browser for the module; every page is saved as a screenshot under
``bench-results/console/``. The referral comes from a partner over gRPC,
as in production; everything after it is done by clicking in the console,
and checked in the registry and the audit log behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from schakel.v1 import audit_pb2

from gateway.audit.query import Filter, query
from gateway.flows.casebook import VIEW_METHOD
from policy.vocabulary import Phase
from tests.support.browser import console_flow, context_for, shot
from tests.support.caseflow import ANTECEDENTEN, HUISVESTING, IN_ZORG, PARTICIPANTS, open_case
from tests.support.caseflow import partners as simulated
from tests.support.pki import HL, RR

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_case_walks_from_referral_to_closure(tmp_path: Path, chromium: Any) -> None:
    async with console_flow(tmp_path) as (flow, origin):
        for org_id, sim in simulated().items():
            if org_id in dict(PARTICIPANTS):
                await flow.run_partner(RR, org_id, dict(PARTICIPANTS)[org_id], sim)
        ref = await open_case(flow)
        case_id = ref.case_id
        officer = flow.pair.fed.officer(RR, "procesregisseur")
        context = await context_for(chromium, origin, officer)
        page = await context.new_page()

        await page.goto(origin + "/")
        assert page.url == origin + "/zaken"
        assert await page.locator(f"a[href='/zaken/{case_id}']").count() == 1
        await shot(page, "01-zaken")

        await page.click(f"a[href='/zaken/{case_id}']")
        assert await page.text_content("#fase") == "Aanmelding"
        await shot(page, "02-zaak-aanmelding")

        refused = await page.evaluate(
            """async (id) => {
                const token = document.querySelector('input[name=csrf]').value;
                const body = new URLSearchParams({csrf: token, uitkomst: 'doelen-bereikt'});
                const answer = await fetch('/zaken/' + id + '/afsluiten', {method: 'POST', body});
                return [answer.status, await answer.text()];
            }""",
            case_id,
        )
        assert refused[0] == 409, "closing a case still in aanmelding is the wrong phase"
        assert "Niet mogelijk in deze toestand" in refused[1]

        await page.click("#form-triage-starten button")
        assert await page.text_content("#fase") == "Triage"

        await page.click("#form-hitnohit button")
        round_result = await page.text_content("#resultaat-hitnohit")
        assert round_result is not None and "ggz-rr" in round_result
        await shot(page, "03-zaak-hitnohit")

        *first, (last_org, last_type) = PARTICIPANTS
        for org_id, org_type in first:
            await page.check(f"#form-triage input[value='{org_id}|{org_type}|{RR}']")
        await shot(page, "04-zaak-triage")
        await page.click("#form-triage button")
        assert await page.text_content("#fase") == "Casusoverleg"
        assert await page.locator("#deelnemers tbody tr").count() == len(first)

        await page.fill("#form-deelnemer input[name=org_id]", last_org)
        await page.select_option("#form-deelnemer select[name=org_type]", last_type)
        await page.click("#form-deelnemer button")
        assert await page.locator("#deelnemers tbody tr").count() == len(PARTICIPANTS)

        await page.select_option("#form-grondslag select[name=soort]", "consent")
        await page.select_option("#form-grondslag select[name=categorie]", IN_ZORG)
        await page.fill("#form-grondslag input[name=verstrekker]", "ggz-rr")
        await page.fill("#form-grondslag input[name=bewijs]", "TOESTEMMING-1")
        await page.click("#form-grondslag button")
        assert "TOESTEMMING-1" in (await page.text_content("#grondslagen") or "")

        for category in (ANTECEDENTEN, IN_ZORG, HUISVESTING):
            await page.check(f"#form-uitvraag input[value='{category}']")
        await page.click("#form-uitvraag button")
        uitvraag = await page.text_content("#resultaat-uitvraag")
        assert uitvraag is not None and "politie-rr" in uitvraag
        assert await page.locator("#feiten tbody tr").count() >= 1
        await shot(page, "05-zaak-uitvraag")

        await page.check("#form-knelpunten input[value='huisvesting']")
        await page.click("#form-knelpunten button")
        await page.select_option("#form-afsluiten select[name=uitkomst]", "doelen-bereikt")
        await page.click("#form-afsluiten button")
        assert await page.text_content("#fase") == "Afschaling"
        assert "doelen-bereikt" in (await page.text_content("#uitkomst") or "")
        await shot(page, "06-zaak-afgesloten")

        await page.goto(origin + "/zaken?fase=afschaling&knelpunt=huisvesting")
        assert await page.locator(f"a[href='/zaken/{case_id}']").count() == 1
        await shot(page, "07-zaken-gefilterd")
        await page.goto(origin + "/zaken?fase=triage")
        assert await page.locator(f"a[href='/zaken/{case_id}']").count() == 0

        parts = flow.pair.nodes[RR].parts
        case = parts.registry.get(case_id)
        assert case.phase is Phase.AFSCHALING
        assert case.outcome == "doelen-bereikt"
        assert case.bottlenecks == ("huisvesting",)
        records = query(parts.audit.engine, Filter(data_subject_id=flow.pseudonym_at(RR, _bsn())))
        names = [e.record.name for e in records]
        assert VIEW_METHOD in names, "opening the case page is audited with the subject"
        for method in ("StartTriage", "Triage", "RecordGround", "StartUitvraag", "CloseCase"):
            assert f"schakel.v1.CaseService/{method}" in names
        closes = [e.record for e in records if e.record.name.endswith("/CloseCase")]
        assert audit_pb2.SPAN_STATUS_ERROR in [r.status for r in closes], (
            "the close refused in aanmelding is audited as refused"
        )

        second = (await open_case(flow, key="ref-2")).case_id
        await page.goto(f"{origin}/zaken/{second}")
        await page.select_option("#form-overdragen select[name=naar]", HL)
        await page.click("#form-overdragen button")
        moved = await page.text_content("#resultaat-overdracht")
        assert moved is not None and HL in moved
        await shot(page, "08-zaak-overgedragen")
        handed = parts.registry.get(second)
        assert handed.phase is Phase.AFSCHALING
        transfer = parts.registry.transfer_of(second)
        assert transfer is not None and transfer.node_id == HL
        assert flow.pair.nodes[HL].parts.registry.get(transfer.remote_case_id).is_open
        await context.close()


def _bsn() -> str:
    from tests.support.referrals import BSN  # noqa: PLC0415

    return BSN
