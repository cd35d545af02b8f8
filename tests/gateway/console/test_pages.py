"""The console's Dutch labels and Amsterdam times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import common_pb2

from gateway.console.pages import age, field_value, local_time, phase_name, reason


def test_times_are_shown_in_amsterdam_time_in_winter_and_in_summer() -> None:
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
    assert local_time(winter) == "15-01-2026 13:00"
    assert local_time(summer) == "15-07-2026 14:00"
    stamp = Timestamp()
    stamp.FromDatetime(summer)
    assert local_time(stamp, with_seconds=True) == "15-07-2026 14:00:00"
    assert local_time(int(winter.timestamp() * 1_000_000)) == "15-01-2026 13:00"
    assert local_time(None) == "—"


def test_ages_are_in_dutch() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert age(now - timedelta(days=3, hours=2), now) == "3 dagen"
    assert age(now - timedelta(hours=5), now) == "5 uur"
    assert age(now - timedelta(minutes=12), now) == "12 min"


def test_phases_reasons_and_values_read_as_dutch() -> None:
    assert phase_name("casusoverleg") == "Casusoverleg"
    assert phase_name(common_pb2.PHASE_TRIAGE) == "Triage"
    assert phase_name(common_pb2.PHASE_UNSPECIFIED) == "—"
    assert reason("art9-no-ground") == (
        "bijzonder persoonsgegeven zonder grondslag (AVG art. 9) (art9-no-ground)"
    )
    assert reason("something-new") == "something-new"
    assert field_value(common_pb2.FactValue(flag=False)) == "nee"
    assert field_value(common_pb2.FactValue(number=4)) == "4"
    coarse = common_pb2.FactValue(date=common_pb2.Date(year=2025, month=6))
    assert field_value(coarse) == "06-2025"
    assert field_value(common_pb2.FactValue()) == "—"
