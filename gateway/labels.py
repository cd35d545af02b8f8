"""Dutch words for the codes the reports show to people.

The audit log and the signals hold codes: gRPC method names, phase enums,
category and reason codes, identity URIs, UTC timestamps. A citizen reading
an inzage or a stuurgroep reading the signals gets these words instead. A
code without a word here is shown as a neutral phrase, never as the code
itself, except the policy bundle's own codes (a legal basis, a theme), which
a bundle may add and which are readable as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from certs.identity import IdentityError, PeerKind, parse_uri
from policy import vocabulary

AMSTERDAM = ZoneInfo("Europe/Amsterdam")

_MONTHS = (
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
)
_MONTHS_SHORT = ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec")


def local(moment: datetime) -> datetime:
    """``moment`` in Dutch time (Europe/Amsterdam)."""
    return moment.astimezone(AMSTERDAM)


def date(moment: datetime) -> str:
    """``3 maart 2026`` in Dutch time."""
    return _day(local(moment))


def date_time(moment: datetime) -> str:
    """``3 maart 2026, 14:05`` in Dutch time."""
    return f"{date(moment)}, {local(moment):%H:%M}"


def month(moment: datetime) -> str:
    """``mrt 2026``: a short month label for chart axes."""
    return f"{_MONTHS_SHORT[moment.month - 1]} {moment.year}"


PHASES = {
    vocabulary.Phase.AANMELDING: "aanmelding",
    vocabulary.Phase.TRIAGE: "triage",
    vocabulary.Phase.CASUSOVERLEG: "casusoverleg",
    vocabulary.Phase.AFSCHALING: "afschaling",
}


def phase(value: int | str) -> str:
    """A phase (proto value or bundle name) in words; ``"onbekend"`` when none is given."""
    name = vocabulary.phase_name(value) if isinstance(value, int) else value
    return PHASES.get(vocabulary.Phase(name), name) if name in vocabulary.PHASES else "onbekend"


CATEGORIES = {
    vocabulary.BEKEND: "of de persoon bekend is, en bij wie",
    vocabulary.REFERRAL: "de aanmelding (thema en redenen)",
    vocabulary.OUTCOME: "de uitkomst van de casus",
    vocabulary.TRANSFER: "de overdracht van de casus",
    "justitie.antecedenten": "justitiële antecedenten",
    "justitie.toezicht": "toezicht door justitie of reclassering",
    "detentie": "detentie",
    "zorg.in_zorg": "of de persoon in zorg is",
    "zorg.crisismaatregel": "een crisismaatregel",
    "sociaal.huisvesting": "huisvesting",
    "sociaal.inkomen_schulden": "inkomen en schulden",
    "sociaal.wmo_jeugd": "Wmo- of jeugdhulp",
    "veiligheid.risico": "veiligheidsrisico's",
    "veiligheid.huiselijk_geweld": "huiselijk geweld",
}


def category(code: str) -> str:
    """A fact category in words; a bundle's own category keeps its code."""
    return CATEGORIES.get(code, code.replace("_", " ").replace(".", ": "))


REASONS = {
    "no-rule": "geen regel staat deze verstrekking toe",
    "phase-not-allowed": "niet toegestaan in deze fase van de casus",
    "art9-no-ground": "bijzonder persoonsgegeven zonder grondslag (AVG art. 9)",
    "art9-no-consent": "gezondheidsgegeven zonder toestemming (AVG art. 9)",
    "condition-unmet:case-accepted": "de casus was nog niet aangenomen",
    "condition-unmet:ground": "de vereiste grondslag (zoals toestemming) was niet vastgelegd",
    "unknown-activity": "onbekend verwerkingsdoel",
    "unknown-phase": "onbekende fase",
    "unknown-provider": "onbekende verstrekker",
    "unknown-recipient": "onbekende ontvanger",
    "unknown-category": "onbekende soort gegevens",
    "not-held": "de organisatie had hierover geen gegevens",
    "provider-not-participant": "de verstrekker was geen deelnemer aan de casus",
    "deadline": "geen antwoord binnen de termijn",
}


def reason(code: str) -> str:
    """Why a category was withheld, in words."""
    return REASONS.get(code, "om een andere reden")


LEGAL_BASES = {
    "WGS": "Wet gegevensverwerking door samenwerkingsverbanden (WGS)",
    "AVG-6.1e": "AVG art. 6 lid 1 sub e (taak van algemeen belang)",
    "Wpg": "Wet politiegegevens (Wpg)",
    "Wjsg": "Wet justitiële en strafvorderlijke gegevens (Wjsg)",
    "toestemming": "uw uitdrukkelijke toestemming (AVG art. 9 lid 2 sub a)",
    "wettelijke-plicht": "een wettelijke plicht om te verstrekken",
    "conflict-van-plichten": "conflict van plichten",
}


def legal_basis(code: str) -> str:
    """A legal basis in words; a bundle's own code as it is, ``"geen"`` when empty."""
    return LEGAL_BASES.get(code, code) if code else "geen"


def legal_basis_short(code: str) -> str:
    """A legal basis as a table cell names it (the summary gives the whole name)."""
    if code == "AVG-6.1e":
        return "AVG art. 6 lid 1e"
    return code.replace("-", " ") if code else "geen"


ACTIVITIES = {
    "complexe-casuistiek": "aanpak complexe casuïstiek",
    "nazorg-ex-gedetineerden": "nazorg voor (ex-)gedetineerden",
    "huiselijk-geweld": "aanpak huiselijk geweld",
    "signalering": "landelijke signalering (alleen aantallen)",
    "inzage": "inzage door de functionaris gegevensbescherming",
    "enrolment": "sleutelbeheer",
}


def activity(code: str) -> str:
    """A processing activity (its id or register URI) in words."""
    tail = code.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return ACTIVITIES.get(tail, "onbekend doel" if code in ("", "onbekend") else tail)


OPERATIONS = {
    "SubmitReferral": "aanmelding van een casus",
    "GetCaseStatus": "stand van een casus opgevraagd",
    "RequestFacts": "gegevens opgevraagd",
    "AnswerHit": "antwoord: is de persoon bekend?",
    "AnswerFacts": "gegevens aangeleverd",
    "AcknowledgeTask": "ontvangst van gegevens bevestigd",
    "ReceiveTasks": "opdracht aan een organisatie",
    "Pseudonymise": "pseudoniem aangemaakt",
    "StartTriage": "triage gestart",
    "Triage": "triagebesluit",
    "AddParticipant": "organisatie toegevoegd aan de casus",
    "RecordGround": "grondslag vastgelegd (zoals toestemming)",
    "RunHitNoHit": "nagevraagd of de persoon bekend is",
    "HitNoHit": "vraag van een ander ZVH: is de persoon bekend?",
    "StartUitvraag": "uitvraag van gegevens gestart",
    "AskParticipant": "gegevens gevraagd aan een deelnemer",
    "DeliverFacts": "gegevens geleverd aan een deelnemer",
    "SetBottlenecks": "knelpunten vastgelegd",
    "CloseCase": "casus afgesloten",
    "HandOverCase": "casus overgedragen aan een ander ZVH",
    "TransferCase": "casus overgenomen van een ander ZVH",
    "LinkCase": "casussen gekoppeld",
    "SubjectReport": "inzage in het logboek",
    "QueryRecords": "logboek doorzocht",
    "Transcrypt": "pseudoniem omgezet",
}


def operation(name: str) -> str:
    """What happened, from a record's operation name, in words."""
    return OPERATIONS.get(name.rsplit("/", 1)[-1], "andere verwerking")


ORG_TYPES = {
    "politie": "Politie",
    "om": "Openbaar Ministerie",
    "reclassering": "Reclassering",
    "ggz": "GGZ",
    "gemeente": "Gemeente",
    "veilig-thuis": "Veilig Thuis",
    "dji": "Dienst Justitiële Inrichtingen",
    "rvdk": "Raad voor de Kinderbescherming",
    "woningcorporatie": "Woningcorporatie",
    vocabulary.REGIE: "Zorg- en Veiligheidshuis",
}

ROLES = {
    vocabulary.PROCESREGISSEUR: "procesregisseur",
    vocabulary.FG: "functionaris gegevensbescherming",
    vocabulary.COLLECTOR_ROLE: "landelijke signalering",
}


def organisation(org_id: str) -> str:
    """``Politie (politie-haaglanden)``: the type the id starts with, then the id."""
    for prefix in sorted(ORG_TYPES, key=len, reverse=True):
        if org_id == prefix or org_id.startswith(prefix + "-"):
            return f"{ORG_TYPES[prefix]} ({org_id})"
    return org_id


def party(uri: str) -> str:
    """Who an identity URI names, in words; ``"onbekend"`` when it names nobody."""
    try:
        kind, parts = parse_uri(uri)
    except IdentityError:
        return "onbekend"
    if kind is PeerKind.PARTNER:
        return organisation(parts[1])
    if kind is PeerKind.OFFICER:
        role = ROLES.get(parts[1], parts[1])
        return f"{role} van Zorg- en Veiligheidshuis {parts[0]}"
    if kind is PeerKind.NODE:
        return f"Zorg- en Veiligheidshuis {parts[0]}"
    if kind is PeerKind.COLLECTOR:
        return "landelijke signalering"
    return f"pseudoniemendienst {parts[0]}"


_WORD_FIXES = {"casuistiek": "casuïstiek", "ggz": "ggz", "zvh": "ZVH"}


def code_words(code: str) -> str:
    """A bundle code (theme, tag, outcome) in words: ``wachtlijst-ggz`` -> ``Wachtlijst ggz``."""
    words = [_WORD_FIXES.get(w, w) for w in code.replace("_", "-").split("-")]
    text = " ".join(w for w in words if w)
    return text[:1].upper() + text[1:]


def bottleneck(tag: str) -> str:
    """A bottleneck tag in words; the empty tag is the cases without one."""
    return code_words(tag) if tag else "Zonder knelpunt"


def period(start: datetime, end: datetime) -> str:
    """A half-open UTC period ``[start, end)``: ``mrt 2026`` for a calendar month, else
    ``5 maart 2026 t/m 31 maart 2026`` (the collector's periods are whole UTC days)."""
    first, last = start.astimezone(UTC), (end - timedelta(seconds=1)).astimezone(UTC)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    if first.day == 1 and first.time() == time() and end.astimezone(UTC) == following:
        return month(first)
    return f"{_day(first)} t/m {_day(last)}"


def _day(moment: datetime) -> str:
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"
