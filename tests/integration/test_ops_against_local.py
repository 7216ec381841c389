"""The operating commands against a running `stepwise local`, over HTTP, as a user runs them (issue 10: "every command
works against a deployed stack and against `stepwise local`, with the same code: boto3 pointed at either").

The local stack runs in this process (moto); each command runs in a child process with `AWS_ENDPOINT_URL` pointed at
the local server, so its boto3 really crosses HTTP: nothing mocks it in the child. The server hands each signed AWS
request to the same in-memory AWS the local stack runs on (stepwise/local_api.py `_aws_call`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import constants as C
from stepwise.local_api import ARCHIVE_BUCKET, LocalApi, serving
from stepwise.simulate import TABLE
from tests.integration.support import workflow

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
API_KEY = "sw_local_ops_key_0123456789"
FLOW = """
name: greet
triggers: [{event: app.signup}]
steps:
  - id: tag
    add_tag: [new]
  - id: pause
    wait: 3d
  - id: later
    add_tag: [later]
"""


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[LocalApi, dict[str, str]]]:
    saved = os.environ.get(C.ENV_LOCAL_API_KEY)
    os.environ[C.ENV_LOCAL_API_KEY] = API_KEY
    try:
        with (
            LocalApi([workflow(FLOW)], start=START, activated_at=START - timedelta(days=1)) as api,
            serving(api, 0) as server,
        ):
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}",
                "AWS_DEFAULT_REGION": api.sim.stack.region,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
            }
            for email in ("ana@example.com", "bo@example.com"):
                signup(api, email)
            yield api, env
    finally:
        if saved is None:
            os.environ.pop(C.ENV_LOCAL_API_KEY, None)
        else:
            os.environ[C.ENV_LOCAL_API_KEY] = saved


def signup(api: LocalApi, email: str) -> None:
    event = {"id": f"signup-{email}", "type": "app.signup", "contact": {"email": email}, "data": {}}
    headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
    with api.lock:
        answer = api.invoke_intake("POST", "/events", headers, json.dumps({"events": [event]}).encode())
        assert answer["statusCode"] in (200, 202), answer
        api.drain()


def stepwise(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "stepwise"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def stack(api: LocalApi) -> list[str]:
    return ["--table", TABLE, "--machine-arn-template", api.sim.arn_template]


def test_history_stats_and_stuck_read_the_local_stack_over_http(local: tuple[LocalApi, dict[str, str]]) -> None:
    api, env = local
    code, out, err = stepwise(env, "history", "ana@example.com", "--json", "--table", TABLE)
    assert (code, err) == (0, "")
    report: dict[str, Any] = json.loads(out)
    assert json.dumps(report).count('"tag"') >= 1 and "greet" in json.dumps(report)
    code, out, err = stepwise(env, "stats", "greet", "--json", "--table", TABLE)
    assert (code, err) == (0, "")
    funnel = json.loads(out)
    assert funnel["entered"] == 2 and funnel["reached"]["tag"] == 2
    code, out, err = stepwise(env, "stuck", "greet", "--json", *stack(api))
    assert (code, err) == (0, "")
    assert json.loads(out)["stuck"] == []  # both wait inside their 3 days


def test_erase_over_http_deletes_the_contact_in_the_local_stack(local: tuple[LocalApi, dict[str, str]]) -> None:
    _, env = local
    code, out, err = stepwise(env, "erase", "bo@example.com", "--yes", "--table", TABLE, "--bucket", ARCHIVE_BUCKET)
    assert (code, err) == (0, ""), out
    code, _, err = stepwise(env, "history", "bo@example.com", "--table", TABLE)
    assert code == 1 and "no contact has that identity" in err
    code, out, err = stepwise(env, "history", "ana@example.com", "--table", TABLE)
    assert (code, err) == (0, "") and "greet" in out  # only Bo went
