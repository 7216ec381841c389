"""The operating commands through the CLI entry point, on the local stack (moto): each prints what a user reads and
exits with the documented code (README: 0 ok, 1 problems found, 2 usage or input error, 3 internal error; capacity
over a quota is a problem found, 1); an AWS
error (a wrong --table or state machine ARN) is one line naming the operation and the resource, exit 2, never
"internal error"; a missing --table is a usage error; the erase preview is a normal outcome (0)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared import constants as C
from shared.store.contacts import ERASED_SK, contact_pk
from shared.store.operations import OperationsStore
from stepwise.cli import main
from stepwise.simulate import DEFAULT_START, LOCAL_BUCKET, TABLE, Simulation
from tests.integration.support import contact, subscribe, workflow

V1 = """name: hello
triggers: [{event: list.subscribed}]
steps:
  - {id: tag, add_tag: hi}
  - {id: w, wait: 3d}
  - {id: t2, add_tag: bye}
"""
V2 = V1.replace("  - {id: w, wait: 3d}\n", "")
ANA, BO, CY = "ana@example.com", "bo@example.com", "cy@example.com"
NOT_FOUND = "check --table against the stack's outputs, and AWS_DEFAULT_REGION (AWS_ENDPOINT_URL for stepwise local)"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulation]:
    """Ana and Cy entered `hello`; Cy's profile went missing during her wait, so her run failed after it; Bo entered
    after that and waits. Bo is the one the erase tests delete, last."""
    with Simulation([workflow(V1)]) as s:
        subscribe(s, ANA, "s1")
        subscribe(s, CY, "s2")
        cy = contact(s, email=CY)["id"]
        profile = s.store.get_item(contact_pk(cy), "PROFILE")
        assert profile is not None
        s.store.delete_item(contact_pk(cy), "PROFILE")
        s.advance(DEFAULT_START + timedelta(days=3, hours=1))
        s.store.put_item(profile)
        subscribe(s, BO, "s3")
        s.settle()  # the ended runs reported, as the run-ended rule does in AWS
        yield s


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `stepwise ARGV`, as a user's shell sees them."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def stack(sim: Simulation, table: str = TABLE) -> list[str]:
    return ["--table", table, "--machine-arn-template", sim.arn_template]


# These two run first: before the module's local stack (moto) is started, as a user's shell is.
def test_no_credentials_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code, out, err = cli(capsys, "history", ANA, "--table", TABLE)
    assert (code, out) == (2, "")
    assert err == (
        "stepwise: history: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
        "(for stepwise local, any test keys and AWS_ENDPOINT_URL)\n"
    )


def test_an_unreachable_endpoint_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # stepwise local not running: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code, out, err = cli(capsys, "stuck", "hello", "--table", TABLE, "--machine-arn-template", "arn:{workflow}")
    assert (code, out) == (2, "")
    assert err == (
        "stepwise: stuck: cannot reach AWS at http://127.0.0.1:9/; check AWS_ENDPOINT_URL (for stepwise local: is it "
        "running?), AWS_DEFAULT_REGION and your network\n"
    )


def test_history_json_has_the_contacts_steps(sim: Simulation, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "history", ANA, "--json", "--table", TABLE)
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["contact"] == contact(sim, email=ANA)["id"]
    assert [(s["step"], s["outcome"], s["why"]) for s in report["steps"]] == [
        ("tag", "done", "tags added: hi"),
        ("w", "waiting", "for 259200s until 2026-12-03T09:00:00+00:00"),
        ("t2", "done", "tags added: bye"),
    ]
    (entered,) = report["workflows"]
    assert (entered["workflow"], entered["entries"]) == ("hello", 1)
    assert {s["version"] for s in report["steps"]} == {entered["version"]}


def test_stuck_json_finds_the_failed_run(sim: Simulation, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "stuck", "hello", "--json", *stack(sim))
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert [(s["contact_id"], s["problem"], s["step"]) for s in report["stuck"]] == [
        (contact(sim, email=CY)["id"], "failed", "w")
    ]


def test_stats_json(sim: Simulation, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "stats", "hello", "--json", "--table", TABLE)
    assert (code, err) == (0, "")
    funnel = json.loads(out)
    assert (funnel["workflow"], funnel["source"], funnel["entered"]) == ("hello", "table", 3)
    # Bo waits at w; Cy's run failed after it: her record reads failed, so she is not waiting (stuck lists her).
    assert (funnel["reached"], funnel["waiting"]) == ({"tag": 3, "w": 3, "t2": 1}, {"w": 1})


def test_diff_counts_the_contacts_on_the_removed_step(
    sim: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "old.yaml").write_text(V1)
    (tmp_path / "new.yaml").write_text(V2)
    code, out, err = cli(capsys, "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"), "--table", TABLE)
    assert (code, err) == (0, "")
    assert out.splitlines()[:6] == [
        "- w: removed",
        "    wait",
        "~ tag: moved",
        "    then w -> then t2",
        "contacts waiting on a step this version removes or moves: 1",  # Bo: Cy's run failed, she waits no more
        "  w (removed): 1",
    ]


def test_resume_that_could_not_redrive_is_a_problem_found_exit_1(
    sim: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto has no RedriveExecution: the redrive is refused, as AWS refuses one past its 14 days. The command ran.
    code, out, err = cli(capsys, "resume", CY, "hello", *stack(sim))
    assert (code, err) == (1, "")
    assert out.startswith("not-redriven: ")
    record = sim.store.get_item(contact_pk(contact(sim, email=CY)["id"]), "ENROLL#hello")
    assert record is not None and record["status"] == "failed"  # put back as it was


def test_a_nonexistent_table_is_one_line_exit_2(sim: Simulation, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "history", ANA, "--table", "no-such-table")
    assert (code, out) == (2, "")
    assert err == (
        "stepwise: history: BatchGetItem on table no-such-table failed: ResourceNotFoundException (Requested resource "
        f"not found); {NOT_FOUND}\n"
    )
    code, out, err = cli(capsys, "stats", "hello", "--table", "no-such-table")
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.startswith("stepwise: stats: ") and "on table no-such-table failed: ResourceNotFoundException" in err
    assert "internal error" not in err and "Traceback" not in err


def test_a_wrong_state_machine_names_the_arn(sim: Simulation, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = sim.arn_template.replace("stepwise-", "nope-")
    code, out, err = cli(capsys, "stuck", "hello", "--table", TABLE, "--machine-arn-template", wrong)
    arn = wrong.replace("{workflow}", "hello")
    assert (code, out) == (2, "")
    assert err == (
        f"stepwise: stuck: ListExecutions on state machine {arn} failed: StateMachineDoesNotExist (State Machine "
        f"Does Not Exist: '{arn}'); check --machine-arn-template against the stack's outputs, and AWS_DEFAULT_REGION "
        "(AWS_ENDPOINT_URL for stepwise local)\n"
    )


def test_a_missing_table_is_a_usage_error(
    sim: Simulation, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEPWISE_TABLE", raising=False)
    code, out, err = cli(capsys, "history", ANA)
    assert (code, out) == (2, "")
    assert err == (
        "stepwise: history: --table (or STEPWISE_TABLE) needed; the stack's outputs name the table, the bucket and "
        "each workflow's alias\n"
    )


def test_capacity_over_quota_is_a_problem_found_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hello.yaml").write_text(V1)
    code, out, err = cli(capsys, "capacity", "--workflows", str(tmp_path), "--contacts-per-day", "1000000", "--json")
    assert (code, err) == (1, "")
    warnings = json.loads(out)["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["OVER QUOTA"]
    code, _, err = cli(capsys, "capacity", "--workflows", str(tmp_path), "--contacts-per-day", "10")
    assert (code, err) == (0, "")
    # Not given as it must be: a usage error, exit 2, one line.
    code, out, err = cli(capsys, "capacity", "--workflows", str(tmp_path))
    assert (code, out, err) == (2, "", "stepwise: capacity: give --contacts-per-day N or --expect WORKFLOW=N\n")
    code, out, err = cli(capsys, "capacity", "--workflows", str(tmp_path), "--expect", "nope=5")
    assert (code, out) == (2, "") and err.startswith("stepwise: capacity: --expect: no workflow named nope")


def test_erase_preview_exits_0_and_deletes_nothing_then_yes_erases(
    sim: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    bo = contact(sim, email=BO)["id"]
    before = OperationsStore(sim.store).partition(bo).items
    options = ["--table", TABLE, "--bucket", LOCAL_BUCKET, "--settle", "0"]
    code, out, err = cli(capsys, "erase", BO, *options)
    assert (code, err) == (0, "")
    kinds = ["activity: 2", "enrolments: 1", "entered: 1", "history: 2", "identities: 1", "memberships: 1"]
    kinds += ["profile: 1", "trigger events: 1"]
    assert out.splitlines()[:9] == [f"contact {bo}: would delete 10 item(s)"] + [f"  {k}" for k in kinds]
    assert out.splitlines()[-1] == "nothing deleted: run again with --yes to erase"
    assert OperationsStore(sim.store).partition(bo).items == before

    code, out, err = cli(capsys, "erase", BO, *options, "--yes")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:9] == [f"contact {bo}: deleted 10 item(s)"] + [f"  {k}" for k in kinds]
    assert "  running executions stopped: 1" in lines and "nothing deleted: run again with --yes to erase" not in lines
    assert [i[C.SK] for i in OperationsStore(sim.store).partition(bo).items] == [ERASED_SK]
    code, out, err = cli(capsys, "history", BO, "--table", TABLE)
    assert (code, out, err) == (1, "", "stepwise history: CONTACT: no contact has that identity\n")


def test_status_without_its_stack_options_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEPWISE_TABLE", raising=False)
    monkeypatch.delenv("STEPWISE_STATE_MACHINE_ARN_TEMPLATE", raising=False)
    code, out, err = cli(capsys, "status", "hello")
    assert (code, out) == (2, "")
    assert err == (
        "stepwise: status: --table and --machine-arn-template needed (or STEPWISE_TABLE / "
        "STEPWISE_STATE_MACHINE_ARN_TEMPLATE); the stack's outputs name the table and each workflow's alias\n"
    )
