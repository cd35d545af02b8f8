"""The FG in the console, in chromium: the audit browser with a verified proof, the
log's verification, the policy bundle, and an inzage whose BSN never leaves the browser;
and the doors that stay shut (a partner's certificate, no certificate, a revoked one,
another officer's pages, a form without its token).

One browser for the module; every page is saved under ``bench-results/console/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.query import Filter, query
from gateway.console.fg import INZAGE_METHOD
from gateway.flows.oversight import OPEN_METHOD
from policy.pseudonyms import Ciphertext, decrypt, pseudonym_hex
from policy.signing import sign_bundle
from tests.support.browser import console_flow, context_for, shot
from tests.support.caseflow import open_case
from tests.support.flow import Flow
from tests.support.pki import RR
from tests.support.referrals import BSN

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _cosigned(flow: Flow) -> None:
    """Wait until a cosigned checkpoint covers the whole log (proofs and inzage need one)."""
    parts = flow.pair.nodes[RR].parts
    for _ in range(200):
        final = parts.checkpointer.latest_final()
        if final is not None and final.size >= parts.audit.head().size:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no cosigned checkpoint covers the log")


async def test_the_fg_browses_proves_verifies_and_makes_an_inzage(
    tmp_path: Path, chromium: Any
) -> None:
    async with console_flow(tmp_path) as (flow, origin):
        await open_case(flow)
        await _cosigned(flow)
        parts = flow.pair.nodes[RR].parts
        subject = flow.pseudonym_at(RR, BSN)
        fg = flow.pair.fed.officer(RR, "fg")
        context = await context_for(chromium, origin, fg)
        page = await context.new_page()

        await page.goto(origin + "/")
        assert page.url == origin + "/fg/audit"
        await page.fill("input[name=aanvrager]", "schakel://partner/")
        await page.click("form.filters button")
        rows = page.locator("#records tbody tr")
        assert await rows.count() >= 1
        assert "SubmitReferral" in (await page.text_content("#records") or "")
        await shot(page, "10-fg-auditlog")

        referral = next(
            e
            for e in query(parts.audit.engine, Filter(data_subject_id=subject))
            if e.record.name.endswith("SubmitReferral")
        )
        await page.click(f"a[href='/fg/audit/{referral.index}']")
        status = page.locator("#bewijs-status")
        assert await status.get_attribute("class") == "ok"
        assert "Inclusiebewijs klopt" in (await status.text_content() or "")
        assert subject in (await page.text_content("main") or "")
        await shot(page, "11-fg-record-bewijs")
        opened = query(parts.audit.engine, Filter(data_subject_id=subject))
        assert OPEN_METHOD in [e.record.name for e in opened], "opening a record is audited"

        await page.goto(origin + "/fg/verificatie")
        await page.click("form[action='/fg/verificatie'] button")
        assert "Geslaagd" in (await page.text_content("#verificatie-uitkomst") or "")
        assert "zvh-haaglanden" in (await page.text_content("#getuigen") or "")
        await shot(page, "12-fg-verificatie")

        await page.goto(origin + "/fg/beleid")
        bundle = parts.policy.evaluator.policy.bundle if parts.policy is not None else None
        assert bundle is not None
        assert bundle.sha256 in (await page.text_content("#bundel") or "")
        assert "nog geen eerdere bundel" in (await page.text_content("#diff") or "")
        await _new_bundle(flow)
        await page.goto(origin + "/fg/beleid")
        assert "2026.2" in (await page.text_content("#bundel") or "")
        diff = await page.text_content("#diff")
        assert diff is not None and '-version: "2026.1"' in diff and '+version: "2026.2"' in diff
        await shot(page, "13-fg-beleid")

        await _inzage(page, origin, flow)
        names = [e.record.name for e in query(parts.audit.engine, Filter(data_subject_id=subject))]
        assert INZAGE_METHOD in names, "the inzage is audited under the person's pseudonym"
        await context.close()


async def _new_bundle(flow: Flow) -> None:
    """The policy owner signs version 2026.2 of the bundle and RR takes it."""
    keys = flow.pair.keys
    text = keys.bundle.read_text()
    keys.bundle.write_text(text.replace('version: "2026.1"', 'version: "2026.2"'))
    sign_bundle(keys.bundle, keys.policy_key)
    store = flow.pair.nodes[RR].parts.policy
    assert store is not None
    for _ in range(100):
        if store.evaluator.policy.bundle.version == "2026.2":
            return
        store.check()
        await asyncio.sleep(0.05)
    raise AssertionError("RR did not take the new bundle")


async def _inzage(page: Any, origin: str, flow: Flow) -> None:
    """The inzage form sends only a ciphertext; the node finds the person's records by it."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if r.method == "POST" else None)
    await page.goto(origin + "/fg/inzage")
    await page.wait_for_selector("form#inzage[data-ready='1']")
    await shot(page, "14-fg-inzage-formulier")
    await page.fill("#bsn", BSN)
    async with page.expect_navigation():
        await page.click("#inzage button")
    report = await page.content()
    assert "aanmelding van een casus" in report  # the referral, in the report's own words
    await shot(page, "15-fg-inzage-rapport")
    assert sent, "the form was posted"
    assert all(BSN not in body for body in sent), "the BSN itself never reaches the node"


async def test_a_ciphertext_made_in_the_browser_decrypts_to_the_persons_pseudonym(
    tmp_path: Path, chromium: Any
) -> None:
    async with console_flow(tmp_path) as (flow, origin):
        context = await context_for(chromium, origin, flow.pair.fed.officer(RR, "fg"))
        page = await context.new_page()
        await page.goto(origin + "/fg/inzage")
        made = await page.evaluate(
            """async ([bsn, y]) => {
                const m = await import('/static/inzage.js');
                return [await m.encryptBsn(bsn, y), await m.encryptBsn(bsn, y)];
            }""",
            [BSN, flow.y.hex()],
        )
        first, second = (Ciphertext.from_bytes(bytes.fromhex(h)) for h in made)
        assert first != second, "every encryption takes fresh randomness"
        keys = flow.pair.keys
        for ct in (first, second):
            assert ct.public_key == flow.y
            moved = keys.chain().transcrypt(ct, RR)
            assert pseudonym_hex(decrypt(moved, keys.domain(RR).secret_key)) == flow.pseudonym_at(
                RR, BSN
            )
        refused = await page.evaluate(
            """async (y) => {
                const m = await import('/static/inzage.js');
                try { await m.encryptBsn('123456789', y); return 'encrypted'; }
                catch (e) { return e.message; }
            }""",
            flow.y.hex(),
        )
        assert "elfproef" in refused
        await context.close()


async def test_only_this_nodes_officers_get_in(tmp_path: Path, chromium: Any) -> None:
    async with console_flow(tmp_path) as (flow, origin):
        fed = flow.pair.fed
        partner = await context_for(chromium, origin, fed.partner(RR, "politie-rr", "politie"))
        page = await partner.new_page()
        answer = await page.goto(origin + "/zaken")
        assert answer is not None and answer.status == 403
        assert "Geweigerd" in (await page.text_content("h1") or "")
        await shot(page, "20-partnercertificaat-geweigerd")
        await partner.close()

        node = await context_for(chromium, origin, fed.node("zvh-haaglanden", force=True))
        page = await node.new_page()
        answer = await page.goto(origin + "/fg/audit")
        assert answer is not None and answer.status == 403
        await node.close()

        regie = await context_for(chromium, origin, fed.officer(RR, "procesregisseur"))
        page = await regie.new_page()
        answer = await page.goto(origin + "/fg/audit")
        assert answer is not None and answer.status == 403, "the FG's pages are the FG's"
        await page.goto(origin + "/zaken")
        posted = await page.evaluate(
            "async () => (await fetch('/zaken/' + '0'.repeat(32) + '/afsluiten', "
            "{method: 'POST', body: new URLSearchParams({uitkomst: 'doelen-bereikt'})})).status"
        )
        assert posted == 403, "a form without its token is refused"
        await regie.close()

        bare = await context_for(chromium, origin, None)
        page = await bare.new_page()
        with pytest.raises(Exception, match="ERR_"):
            await page.goto(origin + "/zaken")
        await bare.close()

        officer = fed.officer(RR, "fg")
        fed.revoke(officer)
        revoked = await context_for(chromium, origin, officer)
        page = await revoked.new_page()
        answer = await page.goto(origin + "/fg/audit")
        assert answer is not None and answer.status == 401
        assert "revoked" in (await page.text_content("main") or "")
        await revoked.close()
