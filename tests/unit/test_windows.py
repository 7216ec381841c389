"""Send windows in the contact's zone (DST-correct) and the frequency cap's day."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.messaging import authoring
from shared.messaging.caps import FrequencyCap, cap_day, next_day
from shared.messaging.windows import SendWindow, iso_z

W = SendWindow(between="09:00-20:00", timezone="Europe/Rome")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_inside_the_window_sends_now() -> None:
    assert W.next_open(utc("2026-06-10T12:00:00+02:00")) is None
    assert W.next_open(utc("2026-06-10T09:00:00+02:00")) is None


def test_23h_local_opens_at_9_local_the_next_day() -> None:
    assert W.next_open(utc("2026-06-10T23:00:00+02:00")) == utc("2026-06-11T09:00:00+02:00")
    assert W.next_open(utc("2026-06-10T20:00:00+02:00")) == utc("2026-06-11T09:00:00+02:00")  # the end is open
    assert W.next_open(utc("2026-06-10T06:30:00+02:00")) == utc("2026-06-10T09:00:00+02:00")


def test_across_the_autumn_dst_change_9_local_stays_9_local() -> None:
    # Europe/Rome leaves summer time on 2026-10-25 at 03:00 CEST: 09:00 local is 08:00 UTC, not 07:00.
    assert W.next_open(utc("2026-10-24T23:00:00+02:00")) == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
    assert W.next_open(utc("2026-03-28T23:00:00+01:00")) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # spring


def test_the_contact_zone_wins_and_a_bad_one_falls_back() -> None:
    now = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # 16:00 Rome, 10:00 New York, 23:00 Tokyo
    assert W.next_open(now, "America/New_York") is None
    assert W.next_open(now, "Asia/Tokyo") == datetime(2026, 6, 11, 0, 0, tzinfo=UTC)  # 09:00 Tokyo
    assert W.next_open(now, "Not/AZone") is None  # Rome's 16:00


def test_a_window_across_midnight() -> None:
    night = SendWindow(between="22:00-06:00", timezone="UTC")
    assert night.next_open(datetime(2026, 1, 1, 23, tzinfo=UTC)) is None
    assert night.next_open(datetime(2026, 1, 1, 12, tzinfo=UTC)) == datetime(2026, 1, 1, 22, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["9-20", "09:00-09:00", "25:00-26:00"])
def test_bad_windows_are_refused(bad: str) -> None:
    # The authoring model (validate, synth) and the run-time form (the step runner) refuse the same windows.
    with pytest.raises(ValidationError):
        authoring.SendWindow(between=bad)
    with pytest.raises(ValidationError, match="not a time zone"):
        authoring.SendWindow(between="09:00-20:00", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match=r"^send_window\.between: .*(not a window of local hours|different times)"):
        SendWindow(between=bad)
    with pytest.raises(ValueError, match=r"^send_window\.between: "):
        SendWindow.model_validate(bad)
    with pytest.raises(ValueError, match=r"^send_window\.timezone: 'Mars/Olympus' is not a time zone"):
        SendWindow(between="09:00-20:00", timezone="Mars/Olympus")


def test_the_run_time_window_reads_what_the_authoring_model_dumps() -> None:
    for written in ("22:00 - 06:00", {"between": "22:00-06:00", "timezone": "Europe/Rome"}):
        model = authoring.SendWindow.model_validate(written)
        plain = SendWindow.model_validate(model.model_dump(mode="json"))
        assert plain == SendWindow.model_validate(written) == model
        assert (plain.between, plain.timezone, plain.describe()) == (model.between, model.timezone, model.describe())
        now = datetime(2026, 3, 29, 12, tzinfo=UTC)
        assert plain.next_open(now, "America/New_York") == model.next_open(now, "America/New_York")
    with pytest.raises(ValueError, match=r"^send_window\.tz: not a field of a send window"):
        SendWindow.model_validate({"between": "09:00-20:00", "tz": "UTC"})
    with pytest.raises(ValueError, match=r"^send_window\.between: missing"):
        SendWindow.model_validate({"timezone": "UTC"})
    with pytest.raises(AttributeError, match="frozen"):
        W.between = "00:00-24:00"  # type: ignore[misc]


def test_the_run_time_cap_reads_what_the_authoring_model_dumps() -> None:
    model = authoring.FrequencyCap.model_validate({"email": 2, "timezone": "Europe/Rome"})
    plain = FrequencyCap.model_validate(model.model_dump(mode="json", exclude_none=True))
    assert plain == FrequencyCap(email=2, timezone="Europe/Rome") == model
    assert (plain.limit("email"), plain.limit("sms"), plain.limit("push")) == (2, None, None)
    for bad, field in (({"email": 0}, "email"), ({"sms": 101}, "sms")):
        with pytest.raises(ValidationError):
            authoring.FrequencyCap.model_validate(bad)
        with pytest.raises(ValueError, match=rf"^frequency_cap\.{field}: .* is not a whole number from 1 to 100"):
            FrequencyCap.model_validate(bad)
    # The run time reads the dump (numbers): text or a boolean is not a cap there.
    for text_or_flag in ("2", True):
        with pytest.raises(ValueError, match=r"^frequency_cap\.email: "):
            FrequencyCap.model_validate({"email": text_or_flag})
    with pytest.raises(ValueError, match=r"^frequency_cap\.timezone: 'Mars/Olympus' is not a time zone"):
        FrequencyCap.model_validate({"email": 1, "timezone": "Mars/Olympus"})
    with pytest.raises(ValueError, match=r"^frequency_cap\.push: not a field of a frequency cap"):
        FrequencyCap.model_validate({"push": 1})


def test_the_cap_day_is_the_contacts_calendar_day() -> None:
    cap = FrequencyCap(email=2, timezone="Europe/Rome")
    late = datetime(2026, 6, 10, 22, 30, tzinfo=UTC)  # 00:30 on the 11th in Rome
    assert cap_day(late, None, cap) == "2026-06-11"
    assert cap_day(late, "America/New_York", cap) == "2026-06-10"
    assert next_day(late, "America/New_York", cap) == datetime(2026, 6, 11, 4, 0, tzinfo=UTC)


def test_timestamps_for_step_functions_round_up_to_the_second() -> None:
    assert iso_z(datetime(2026, 10, 25, 8, 0, 0, 1, tzinfo=UTC)) == "2026-10-25T08:00:01Z"
    assert iso_z(datetime(2026, 10, 25, 8, 0, tzinfo=UTC)) == "2026-10-25T08:00:00Z"
