"""No tracebacks where a user types: each failure found by trying the CLI is one line with a documented exit code."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest

from shared.events import ContactEvent
from stepwise import errors
from stepwise.cli import main

WORKFLOW = "name: hello\ntriggers: [{event: list.subscribed}]\nsteps:\n  - {id: hi, send_email: {template: welcome}}\n"
EVENT = '{"id": "e1", "type": "list.subscribed", "contact": {"email": "a@example.com"}, "data": {"list": "x"%s}}'


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    f = tmp_path / "hello.yaml"
    f.write_text(WORKFLOW)
    return f


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.err


def test_a_number_too_large_in_an_events_file(tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"event": %s}\n' % (EVENT % ', "n": 1e400'))
    code, err = run(capsys, "simulate", str(wf), "--events", str(events))
    assert (code, err) == (
        1,
        f"{events}:1: number 1e400 is too large to store (not a finite number); write a smaller one\n",
    )


def test_nan_in_an_events_file(tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text("\n" + '{"event": %s}\n' % (EVENT % ', "n": NaN'))
    code, err = run(capsys, "simulate", str(wf), "--events", str(events))
    assert (code, err) == (1, f"{events}:2: NaN is not a number JSON allows; write a number or a string\n")


def test_a_non_utf8_events_file(tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"# sign-ups\n" + ('{"event": %s}\n' % (EVENT % ', "name": "Jos\xe9"')).encode("latin-1"))
    code, err = run(capsys, "simulate", str(wf), "--events", str(events))
    assert (code, err) == (1, f"{events}:2: not UTF-8 text (byte 0xe9); save the file as UTF-8\n")


def test_start_tomorrow_is_a_usage_error(tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "simulate", str(wf), "--events", "x.jsonl", "--start", "tomorrow")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last == (
        "stepwise simulate: error: argument --start: invalid ISO 8601 time with a zone (e.g. 2026-12-01T09:00:00Z) "
        "value: 'tomorrow'"
    )


def test_start_without_a_zone_is_a_usage_error(wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "simulate", str(wf), "--events", "x.jsonl", "--start", "2026-12-01T09:00:00")
    assert code == 2 and err.strip().splitlines()[-1].endswith("value: '2026-12-01T09:00:00'")


def test_demo_of_a_missing_folder_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "demo", "/nonexistent")
    assert (code, err) == (
        2,
        "stepwise: demo: /nonexistent: no such folder; give a folder of workflow files (default: workflows)\n",
    )


def test_cost_of_negative_contacts_is_refused(wf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["cost", str(wf), "--contacts", "-5"])
    code, captured = info.value.code, capsys.readouterr()
    assert code == 2 and "$-" not in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        "stepwise cost: error: argument --contacts: invalid number of contacts (a whole number, 0 or more) value: '-5'"
    )


def test_simulate_subscribing_to_a_missing_workflow_names_it_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "sub.yaml"
    f.write_text(
        "name: subber\ntriggers: [{event: list.subscribed}]\nsteps:\n  - {id: join, subscribe: {campaign: nurture}}\n"
    )
    events = tmp_path / "e.jsonl"
    events.write_text('{"event": %s}\n' % (EVENT % ""))
    code, err = run(capsys, "simulate", str(f), "--events", str(events))
    assert (code, err) == (
        1,
        f"{f}: step join, field subscribe.campaign: no workflow file defines 'nurture'\n"
        f"(simulate the folder, `stepwise simulate {tmp_path}`, to run the files together)\n",
    )


def test_a_naive_occurred_at_in_an_events_file_is_one_line(
    tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "naive.jsonl"
    events.write_text('{"event": %s}\n' % (EVENT[:-1] + ', "occurred_at": "2026-12-01T09:00:00"}') % "")
    code, err = run(capsys, "simulate", str(wf), "--events", str(events))
    assert (code, err) == (
        1,
        f"{events}:1: field event.occurred_at: Value error, needs a time zone, "
        "e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00\n",
    )


def test_an_internal_error_is_one_line_with_exit_3_and_debug_shows_the_traceback() -> None:
    def broken() -> int:
        raise KeyError("states")

    err = io.StringIO()
    assert errors.run(broken, err=err) == errors.EXIT_INTERNAL
    assert err.getvalue() == (
        "stepwise: internal error: KeyError: 'states'\n"
        "stepwise: run again with --debug for the traceback, and report it\n"
    )
    err = io.StringIO()
    assert errors.run(broken, debug=True, err=err) == errors.EXIT_INTERNAL
    assert err.getvalue().startswith("Traceback (most recent call last):")


def test_debug_is_accepted_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "demo", "/nonexistent", "--debug")
    assert code == 2
    assert "Traceback" in err and err.endswith("no such folder; give a folder of workflow files (default: workflows)\n")


def test_an_occurred_at_without_a_zone_is_refused() -> None:
    base = {"id": "e1", "type": "list.subscribed", "contact": {"email": "a@example.com"}}
    with pytest.raises(ValueError, match=r"occurred_at\n  Value error, needs a time zone, e\.g\. 2026-12-01T09:00:00Z"):
        ContactEvent.model_validate({**base, "occurred_at": "2026-12-01T09:00:00"})
    ok = ContactEvent.model_validate({**base, "occurred_at": "2026-12-01T09:00:00+01:00"})
    assert ok.occurred_at == datetime.fromisoformat("2026-12-01T08:00:00+00:00")


def test_an_events_line_without_at_happens_at_the_start(tmp_path: Path) -> None:
    from stepwise.simulate import DEFAULT_START, read_events

    events = tmp_path / "e.jsonl"
    events.write_text('{"event": %s}\n' % (EVENT % ""))
    (item,) = read_events(events, DEFAULT_START)
    assert item.at == DEFAULT_START


def test_debug_does_not_turn_a_problem_in_an_events_file_into_a_traceback(
    tmp_path: Path, wf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: --debug shows tracebacks of errors that stop a command; problems found (exit 1) stay one line."""
    events = tmp_path / "bad.jsonl"
    events.write_text("{bad\n")
    code, err = run(capsys, "simulate", str(wf), "--events", str(events), "--debug")
    assert (code, err) == (1, f"{events}:1: not JSON: Expecting property name enclosed in double quotes\n")
