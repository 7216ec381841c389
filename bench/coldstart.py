"""Cold start: each Lambda handler's import, and its import plus first invocation, against a bare `import boto3`,
side by side in one run; with --before REV, the same figures for another commit in the same rounds.

Each figure is the median of --runs fresh interpreters (rounds interleaved, so a busy machine weighs on all alike),
timing only the import (interpreter start-up excluded), wall and CPU. Ratios are against boto3 measured in the
same rounds (issue 11 target: import at most 1.5x).

"import + 1st call" is a second interpreter per sample that imports the handler (timed), then calls it once
(timed) with a representative event, against moto started in the probe after the timed import with the AWS state
the event meets (restored by plain boto3 calls: no test code and nothing of ours is imported for it before the
call; moto's own time is in the call's, as AWS's round trips are in a Lambda's): the intake a signed Shopify delivery,
the router that delivery's SQS message (the example workflows loaded, the contact recorded), the step runner an
add_tag Task for that contact, the sender the outbox INSERT of an email to them (rendered and sent). Its ratio is
against the bare boto3 import too: it includes creating the boto3 clients and the calls' round trips, so it is no 1.5x
figure; it shows whether work was cut or only moved into the first request (compare with --before).

Modes:
  source    our modules compiled from source at every import (an asset without bytecode: Lambda's code folder
            is read-only, nothing is cached)
  bytecode  our modules' python bytecode already there (what the assets ship now: infra/assets.py); here a warmed
            PYTHONPYCACHEPREFIX of this machine's Python

    .venv/bin/python bench/coldstart.py [--runs 7] [--mode source|bytecode|both] [--before REV] [--no-call]"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

HANDLERS = {
    "functions.trigger_router.intake": ("intake (HTTP webhooks)", "handler"),
    "functions.trigger_router.router": ("router (queue, stream, schedules)", "queue_handler"),
    "functions.step_runner.handler": ("step runner", "handler"),
    "functions.senders.handler": ("sender", "handler"),
}
BASELINE = "boto3"
# argv: module, entry point ("" = import only), event file ("" = none). Prints wall, cpu, modules; then the call's.
PROBE = """\
import json, sys, time
w, c = time.perf_counter(), time.process_time()
module = __import__(sys.argv[1], fromlist=["_"])
out = [time.perf_counter() - w, time.process_time() - c, len(sys.modules)]
if sys.argv[2]:
    with open(sys.argv[3]) as f:
        spec = json.load(f)
    import os
    os.environ.update(spec["env"])
    import boto3, moto  # untimed: the AWS the call meets (boto3 is already loaded by the handler's import)
    mock = moto.mock_aws()
    mock.start()
    aws = boto3.session.Session()  # its own loader: the handler's clients load their models themselves
    ddb, s3, sqs, ssm = (aws.client(n) for n in ("dynamodb", "s3", "sqs", "ssm"))
    ddb.create_table(**spec["table"])
    for item in spec["items"]:
        ddb.put_item(TableName=spec["table"]["TableName"], Item=item)
    for bucket, objects in spec["buckets"].items():
        s3.create_bucket(Bucket=bucket)
        for key, body in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode("latin-1"))
    for queue in spec["queues"]:
        sqs.create_queue(QueueName=queue)
    for name, value in spec["parameters"].items():
        ssm.put_parameter(Name=name, Value=value, Type="SecureString")
    for identity in spec.get("email_identities", []):
        aws.client("sesv2").create_email_identity(EmailIdentity=identity)
    class Context:
        function_name = "stepwise-probe"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-probe"
        aws_request_id = "req-1"
        def get_remaining_time_in_millis(self):
            return 30000
    w, c = time.perf_counter(), time.process_time()
    result = getattr(module, sys.argv[2])(spec["event"], Context())
    out += [time.perf_counter() - w, time.process_time() - c, len(sys.modules)]
    failed = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
    if failed or (isinstance(result, dict) and result.get("statusCode", 200) >= 300):
        raise SystemExit(f"the call failed: {result}")
print("PROBE", *out)
"""
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def probe_env(tree: Path, pycache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPYCACHEPREFIX", "AWS_"))}
    env.update(FAKE_AWS)
    env["PYTHONPATH"] = str(tree)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def once(tree: Path, env: dict[str, str], module: str, entry: str = "", event: Path | None = None) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module, entry, str(event or "")],
        cwd="/",  # not the repository: only PYTHONPATH's tree is importable
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {module} {entry or 'import'} failed:\n{out.stderr.strip()[-3000:]}")
    line = next(li for li in reversed(out.stdout.splitlines()) if li.startswith("PROBE "))
    return [float(x) for x in line.split()[1:]]


# ---- the first invocations: one snapshot of AWS state and one event per handler and sample ------------------


class Scenarios:
    """Makes each handler's event for one sample, with the AWS state it meets (table items, archive objects,
    queues, parameters), on moto in this process (which is not measured and imports what it needs); the probe
    restores that state into its own moto after the timed import. Each sample's event is new (its own delivery,
    execution)."""

    def __init__(self, folder: Path, tree: Path) -> None:
        os.environ.update(FAKE_AWS)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        sys.path.insert(0, str(tree))
        from moto import mock_aws

        from infra.constructs.state_machines import load_workflows
        from shared import constants as C
        from shared.history import dump_entry_plans
        from shared.runtime.workflows_file import dump_workflows
        from shared.workflow.compiler import entry_plans
        from tests.integration.intake_support import SHOPIFY_SECRET, TABLE, create_resources, intake_env

        self.mock = mock_aws()
        self.mock.start()
        self.folder = folder
        self.n = 0
        self.table = TABLE
        self.res = create_resources()
        workflows = [c.workflow for c in load_workflows(tree / "workflows")]
        wf_file, plans = folder / C.WORKFLOWS_FILE, folder / C.ENTRY_PLANS_FILE
        wf_file.write_bytes(dump_workflows(workflows))
        plans.write_bytes(dump_entry_plans(entry_plans(workflows)))
        base = {**intake_env(self.res["queue_url"]), "POWERTOOLS_LOG_LEVEL": "INFO"}
        base.pop("POWERTOOLS_METRICS_DISABLED")  # as deployed: metrics on (EMF lines)
        self.env = {
            **base,
            C.ENV_STATE_MACHINE_ARN_TEMPLATE: "arn:aws:states:us-east-1:123456789012:stateMachine:stepwise-{workflow}",
            C.ENV_WORKFLOWS_FILE: str(wf_file),
            C.ENV_ENTRY_PLANS: str(plans),
            C.ENV_MAX_RECEIVE_COUNT: "5",
            # The sender's: the repository's templates, a verified From, the unsubscribe link's key.
            C.ENV_TEMPLATES_DIR: str(tree / "templates"),
            C.ENV_EMAIL_FROM: "news@example.com",
            C.ENV_SES_CONFIGURATION_SET: "stepwise-probe",
            C.ENV_UNSUBSCRIBE_URL: "https://api.example.com/unsubscribe/",
            C.ENV_UNSUBSCRIBE_KEY_PARAMETER: "/stepwise/test/unsubscribe-key",
        }
        os.environ.update(self.env)
        self.res["ssm"].put_parameter(Name="/stepwise/test/unsubscribe-key", Value="k" * 32, Type="SecureString")
        __import__("boto3").client("sesv2").create_email_identity(EmailIdentity="news@example.com")
        self.secret = SHOPIFY_SECRET

    def close(self) -> None:
        self.mock.stop()

    def snapshot(self) -> dict[str, Any]:
        from shared.store.contacts import table_definition

        ddb, s3, sqs, ssm = (self.res[n] for n in ("dynamodb", "s3", "sqs", "ssm"))
        buckets = {
            b["Name"]: {
                o["Key"]: s3.get_object(Bucket=b["Name"], Key=o["Key"])["Body"].read().decode("latin-1")
                for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])
            }
            for b in s3.list_buckets()["Buckets"]
        }
        params = ssm.get_parameters_by_path(Path="/", Recursive=True, WithDecryption=True)["Parameters"]
        return {
            "env": self.env,
            "table": table_definition(self.table),
            "items": ddb.scan(TableName=self.table)["Items"],
            "buckets": buckets,
            "queues": [u.rsplit("/", 1)[-1] for u in sqs.list_queues().get("QueueUrls", [])],
            "parameters": {p["Name"]: p["Value"] for p in params},
            "email_identities": ["news@example.com"],
        }

    def write(self, name: str, event: Any, state: dict[str, Any]) -> Path:
        path = self.folder / f"{name}-{self.n}.json"
        path.write_text(json.dumps({**state, "event": event}, default=str))
        return path

    def sample(self) -> dict[str, Path]:
        """One event per handler: a new delivery (intake), its queue message (router), a Task for the contact it
        made (step runner)."""
        from functions.trigger_router import intake, router
        from shared import constants as C
        from shared.workflow.compiler import compile_workflow
        from shared.workflow.model import Workflow
        from tests.integration.intake_support import Context, http_event, shopify_delivery

        self.n += 1
        email = f"probe{self.n}@example.com"
        body, headers = shopify_delivery("orders.paid", email=email, event_id=f"probe-{self.n}")
        delivery = http_event("POST", "/webhooks/shopify", body, headers)
        events = {"functions.trigger_router.intake": self.write("intake", delivery, self.snapshot())}
        intake.reset()
        assert intake.handler(delivery, Context())["statusCode"] in (200, 202)  # puts the message to route
        sqs, url = self.res["sqs"], self.res["queue_url"]
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:stepwise-test-intake",
                "awsRegion": "us-east-1",
            }
            for m in got
        ]
        sqs_event = {"Records": records}
        events["functions.trigger_router.router"] = self.write("router", sqs_event, self.snapshot())
        router.reset()
        assert not router.queue_handler(sqs_event, Context())["batchItemFailures"]
        contact_id = self.contact_of(email)
        wf = Workflow.model_validate(
            {"name": "probe", "triggers": [{"event": "list.subscribed"}], "steps": [{"id": "tag", "add_tag": "probed"}]}
        )
        task = compile_workflow(wf, "arn:aws:lambda:us-east-1:123456789012:function:x")["States"]["tag"]
        payload = {k: v for k, v in task["Parameters"]["Payload"].items() if not k.endswith(".$")}
        payload.update(
            contact_id=contact_id,
            event={},
            run={},
            execution=f"arn:aws:states:us-east-1:123456789012:execution:stepwise-probe:run-{self.n}",
            entered="2026-12-02T00:00:00Z",
        )
        events["functions.step_runner.handler"] = self.write("step", payload, self.snapshot())
        # The sender: the outbox INSERT of an email queued for that contact, as the table's stream delivers it.
        from boto3.dynamodb.types import TypeSerializer

        message = {
            C.PK: f"CONTACT#{contact_id}",
            C.SK: f"MSG#probe-{self.n}",
            "message_id": f"probe-{self.n}",
            "channel": "email",
            "workflow": "holiday-series",
            "step": "thanks",
            "template": "holiday-thanks",
            "to": email,
            "status": "queued",
            "at": "2026-12-02T00:00:00+00:00",
        }
        self.res["dynamodb"].put_item(
            TableName=self.table, Item={k: TypeSerializer().serialize(v) for k, v in message.items()}
        )
        record = {
            "eventID": str(self.n),
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/stepwise-test/stream/x",
            "dynamodb": {
                "NewImage": {k: TypeSerializer().serialize(v) for k, v in message.items()},
                "SequenceNumber": str(100 + self.n),
            },
        }
        events["functions.senders.handler"] = self.write("send", {"Records": [record]}, self.snapshot())
        return events

    def contact_of(self, email: str) -> str:
        from shared import constants as C

        for item in self.res["dynamodb"].scan(TableName=self.table)["Items"]:
            pk = item[C.PK]["S"]
            if pk.startswith("CONTACT#") and email in json.dumps(item):
                return str(pk).removeprefix("CONTACT#")
        raise SystemExit(f"the router recorded no contact for {email}")


# ---- the rounds -----------------------------------------------------------------------------------------------


def make_events(tree: Path, folder: Path, count: int) -> dict[str, list[Path]]:
    """`count` events per handler, made by the tree's own code (its formats) in a child process."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--events-into", str(folder), "--tree", str(tree), "--runs", str(count)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the events could not be made:\n{out.stderr.strip()[-3000:]}")
    made: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return {module: [Path(p) for p in paths] for module, paths in made.items()}


def write_events(folder: Path, tree: Path, count: int) -> None:
    scenarios = Scenarios(folder, tree)
    made: dict[str, list[str]] = {}
    try:
        for _ in range(count):
            for module, path in scenarios.sample().items():
                made.setdefault(module, []).append(str(path))
    finally:
        scenarios.close()
    print(json.dumps(made))


def measure(
    trees: dict[str, Path], runs: int, pycache: str | None, events: dict[str, dict[str, list[Path]]]
) -> dict[tuple[str, str], list[float]]:
    """Median [import wall, cpu, modules (, call wall, cpu, modules)] per (tree, module), rounds interleaved."""
    envs = {name: probe_env(tree, None if pycache is None else f"{pycache}/{name}") for name, tree in trees.items()}
    modules = [BASELINE, *HANDLERS]
    if pycache is not None:  # warm: compile every module once so the timed runs read bytecode
        for name, tree in trees.items():
            for module in modules:
                once(tree, envs[name], module)
    samples: dict[tuple[str, str], list[list[float]]] = {}
    for i in range(runs):
        for name, tree in trees.items():
            for module in modules:
                if module == BASELINE and name != next(iter(trees)):
                    continue
                samples.setdefault((name, module), []).append(once(tree, envs[name], module))
                if module in events.get(name, {}):
                    call = once(tree, envs[name], module, HANDLERS[module][1], events[name][module][i])
                    samples.setdefault((name, module + "+call"), []).append(call)
    return {key: [statistics.median(col) for col in zip(*rows, strict=True)] for key, rows in samples.items()}


def report(title: str, trees: dict[str, Path], figures: dict[tuple[str, str], list[float]], runs: int) -> None:
    first = next(iter(trees))
    bw, bc, bm = figures[(first, BASELINE)][:3]
    print(f"{title} (medians of {runs} fresh interpreters; ratios against import boto3):")
    print(
        f"  {'module':34} {'tree':>7} {'wall ms':>8} {'ratio':>6} {'cpu ratio':>9} {'modules':>7}"
        f" | {'import + 1st call ms':>20} {'ratio':>6} {'cpu ratio':>9}"
    )
    print(f"  {'import boto3':34} {'':>7} {bw * 1000:8.0f} {1:6.2f} {1:9.2f} {bm:7.0f} |")
    for module, (label, _entry) in HANDLERS.items():
        for name in trees:
            w, c, m = figures[(name, module)][:3]
            line = f"  {label:34} {name:>7} {w * 1000:8.0f} {w / bw:6.2f} {c / bc:9.2f} {m:7.0f} |"
            call = figures.get((name, module + "+call"))
            if call:
                cw, cc = call[0] + call[3], call[1] + call[4]
                line += f" {cw * 1000:20.0f} {cw / bw:6.2f} {cc / bc:9.2f}"
            print(line)


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The tree of another commit (git archive: the shared working tree is not touched)."""
    with tempfile.TemporaryDirectory(prefix="coldstart-rev-") as tmp:
        parts = ["functions", "shared", "infra", "stepwise", "tests", "workflows", "templates"]  # the events' makers
        data = subprocess.run(["git", "archive", rev, *parts], cwd=ROOT, capture_output=True, check=True)
        with tarfile.open(fileobj=__import__("io").BytesIO(data.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mode", choices=("source", "bytecode", "both"), default="both")
    parser.add_argument("--before", metavar="REV", help="also measure this commit's functions/ and shared/")
    parser.add_argument("--no-call", action="store_true", help="imports only (no first call)")
    parser.add_argument("--events-into", type=Path, help=argparse.SUPPRESS)  # internal: make_events' child
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.events_into:
        write_events(args.events_into, args.tree, args.runs)
        return
    with contextlib.ExitStack() as stack:
        trees = {"now": ROOT}
        if args.before:
            trees = {"before": stack.enter_context(checkout(args.before)), "now": ROOT}
        events = {}
        if not args.no_call:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coldstart-events-")))
            events = {name: make_events(tree, folder / name, args.runs) for name, tree in trees.items()}
        if args.mode in ("source", "both"):
            figures = measure(trees, args.runs, None, events)
            report("source: our modules compiled at import", trees, figures, args.runs)
        if args.mode in ("bytecode", "both"):
            pycache = stack.enter_context(tempfile.TemporaryDirectory(prefix="coldstart-pyc-"))
            figures = measure(trees, args.runs, pycache, events)
            report("bytecode: our modules precompiled", trees, figures, args.runs)
    print("target: each handler's import at most 1.5x boto3's (issue 11)")


if __name__ == "__main__":
    main()
