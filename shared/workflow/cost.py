"""Cost: the paths a contact can take through a compiled state machine, their transitions, and their price."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared import constants as C

# Standard workflows: USD per 1,000 state transitions (us-east-1; the free tier is left out).
PRICE_PER_1000_TRANSITIONS = 0.025
CALLBACK_SUFFIX = ".waitForTaskToken"
TIMEOUT_ERROR = "States.Timeout"
DEFAULT_MAX_ATTEMPTS = 3  # ASL: a retrier without MaxAttempts retries three times


def is_terminal(state: dict[str, Any]) -> bool:
    return state["Type"] in ("Succeed", "Fail") or state.get("End") is True


def successors(asl: dict[str, Any], name: str) -> list[str]:
    """Where the flow can go after `name` for a contact that neither errors nor resumes, each target once.

    The Entry Choice takes its Default (no resume_at, start_delay 0); other Choices take every branch; a
    callback Task also goes to its States.Timeout catch. Other catches are errors and left out.
    """
    state = asl["States"][name]
    out: list[str] = []
    if state["Type"] == "Choice":
        if name != C.STATE_ENTRY:
            out.extend(c["Next"] for c in state.get("Choices", []))
        if "Default" in state:
            out.append(state["Default"])
    elif "Next" in state:
        out.append(state["Next"])
    if state["Type"] == "Task" and str(state.get("Resource", "")).endswith(CALLBACK_SUFFIX):
        out.extend(c["Next"] for c in state.get("Catch", []) if TIMEOUT_ERROR in c["ErrorEquals"])
    return list(dict.fromkeys(out))


def paths(asl: dict[str, Any]) -> list[list[str]]:
    """Every simple path (no state twice) from StartAt to a terminal state, as state names, StartAt included."""
    out: list[list[str]] = []

    def walk(path: list[str]) -> None:
        name = path[-1]
        if is_terminal(asl["States"][name]):
            out.append(list(path))
        # An End: true callback Task still has its timeout catch to follow.
        for nxt in successors(asl, name):
            if nxt not in path:  # a repeat is a loop: reported by loops(), not as a path
                walk([*path, nxt])

    walk([asl["StartAt"]])
    return out


def transitions(path: list[str]) -> int:
    """State transitions billed for a path: one per state entered, the first (Entry) included."""
    return len(path)


def _calls_webhook(state: dict[str, Any]) -> bool:
    payload = state.get("Parameters", {}).get("Payload", {})
    specs = payload.get("steps") or ([payload["step"]] if payload.get("step") else [])
    return any(s.get("kind") == "call_webhook" for s in specs)


def retries(state: dict[str, Any]) -> tuple[int, int]:
    """The most retries of one state, (of WebhookFailed, of anything else), each billed as a transition.

    Each retrier keeps its own count, so errors that alternate can use them all: the bound is their sum. The
    WebhookFailed retrier counts only for a Task with a call_webhook step (no other step raises it)."""
    webhook = other = 0
    for r in state.get("Retry", []):
        attempts = int(r.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS))
        if C.ERROR_WEBHOOK in r["ErrorEquals"]:
            webhook += attempts if _calls_webhook(state) else 0
        else:
            other += attempts
    return webhook, other


def loops(asl: dict[str, Any]) -> list[list[str]]:
    """Every elementary cycle among the states reachable from StartAt, each starting at its earliest state."""
    order = _reachable(asl)
    rank = {name: i for i, name in enumerate(order)}
    out: list[list[str]] = []

    def walk(start: str, path: list[str]) -> Iterator[list[str]]:
        for nxt in successors(asl, path[-1]):
            if nxt == start:
                yield list(path)
            elif rank[nxt] > rank[start] and nxt not in path:
                yield from walk(start, [*path, nxt])

    for start in order:
        out.extend(walk(start, [start]))
    return out


def _reachable(asl: dict[str, Any]) -> list[str]:
    """States reachable from StartAt, in a stable (depth-first) order."""
    seen: list[str] = []
    todo = [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.append(name)
            todo.extend(reversed(successors(asl, name)))
    return seen


def jump_waits(asl: dict[str, Any]) -> set[str]:
    """The Wait states a go-to follows: in a Task's `ahead` (compiler), a wait before a jump."""
    out: set[str] = set()
    for st in asl["States"].values():
        ahead = st.get("Parameters", {}).get("Payload", {}).get("ahead") or []
        for plan in ahead.values() if isinstance(ahead, dict) else [ahead]:
            wait = ""
            for p in plan:
                if p.get("kind") == "goto" and wait:
                    out.add(wait)
                elif p.get("kind") in ("wait", "wait_until"):
                    wait = p["id"]
    return {w for w in out if w in asl["States"]}


def longest_to(asl: dict[str, Any], target: str) -> int:
    """Transitions of the longest simple path from StartAt to `target`, both included (0: none reaches it)."""
    best = 0

    def walk(path: list[str]) -> None:
        nonlocal best
        if path[-1] == target:
            best = max(best, len(path))
            return
        for nxt in successors(asl, path[-1]):
            if nxt not in path:
                walk([*path, nxt])

    walk([asl["StartAt"]])
    return best


def price(transition_count: int, contacts: int) -> float:
    """USD for `contacts` contacts each taking `transition_count` transitions."""
    return transition_count * contacts * PRICE_PER_1000_TRANSITIONS / 1000


@dataclass
class CostReport:
    """What `stepwise cost` prints: paths, their transitions and prices, loops and the start-delay extra."""

    paths: list[list[str]]
    loops: list[list[str]]
    start_delay_extra: int  # transitions a trigger's start delay adds (the StartDelay Wait state)
    contacts: int
    max_loops: int = 0  # settings.max_loops: how many go-to jumps a run may take before LoopLimitReached
    # Per path: the most retries its states allow, (WebhookFailed, anything else). Not in fewest/most/ceiling,
    # which count a run without errors; AWS bills each retry as a transition.
    path_retries: list[tuple[int, int]] = field(default_factory=list)
    # Send steps that a send window or the frequency cap can hold. Each time one is held the run takes the Task's
    # deferral loop (Pass, Wait, the Task again): `deferral_extra` more transitions, none when it is not held.
    deferrable: list[str] = field(default_factory=list)
    deferral_extra: int = C.DEFERRAL_TRANSITIONS
    # A go-to met after a wait (`wait: 1d` then `goto: x`) that is one too many ends the run after that wait: the
    # run goes through it into the next Task, which ends it. The most transitions such a run takes before its
    # loops: the longest way to that wait plus that Task and LoopLimitReached (0 when no go-to follows a wait).
    bound_end: int = 0

    @property
    def webhook_retries(self) -> int:
        """Transitions a receiving app that stays down adds, on the path with the most webhook calls."""
        return max((w for w, _ in self.path_retries), default=0)

    @property
    def error_retries(self) -> int:
        """Transitions retried Lambda errors (throttles, crashes) could add at most, on the worst path."""
        return max((o for _, o in self.path_retries), default=0)

    @property
    def ceiling(self) -> int:
        """The most one contact can cost, loops included: the longest path plus max_loops turns of the longest
        loop (and the start delay). A run stopped by the bound at a go-to right after a Task costs no more: its
        LoopLimitReached state stands where the path's next state would have; one stopped at a go-to after a
        wait goes on through that wait and one Task (`bound_end`)."""
        turn = max((transitions(lp) for lp in self.loops), default=0)
        return max(self.most, self.bound_end) + self.max_loops * turn + self.start_delay_extra

    @property
    def fewest(self) -> int:
        return min((transitions(p) for p in self.paths), default=0)

    @property
    def most(self) -> int:
        return max((transitions(p) for p in self.paths), default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "paths": [{"states": p, "transitions": transitions(p)} for p in self.paths],
            "fewest": self.fewest,
            "most": self.most,
            "start_delay_extra": self.start_delay_extra,
            "loops": [{"states": lp, "transitions_per_iteration": transitions(lp)} for lp in self.loops],
            "contacts": self.contacts,
            "usd_per_1000_transitions": PRICE_PER_1000_TRANSITIONS,
            "ceiling": self.ceiling,
            "retries": {"webhook_most_extra": self.webhook_retries, "errors_most_extra": self.error_retries},
            "deferrals": {"steps": self.deferrable, "extra_per_deferred_send": self.deferral_extra},
            "price_usd": {
                "fewest": price(self.fewest, self.contacts),
                "most": price(self.most, self.contacts),
                "ceiling": price(self.ceiling, self.contacts),
            },
        }


def analyse(asl: dict[str, Any], contacts: int = 1000, max_loops: int = 0) -> CostReport:
    extra = 1 if C.STATE_START_DELAY in asl["States"] else 0
    found = paths(asl)
    per_path = []
    for p in found:
        counts = [retries(asl["States"][name]) for name in p]
        per_path.append((sum(w for w, _ in counts), sum(o for _, o in counts)))
    return CostReport(
        paths=found,
        loops=loops(asl),
        start_delay_extra=extra,
        contacts=contacts,
        max_loops=max_loops,
        path_retries=per_path,
        # The wait, then the Task after it (which ends the run) and LoopLimitReached.
        bound_end=max((longest_to(asl, w) + 2 for w in jump_waits(asl)), default=0),
        deferrable=[
            sid
            for st in asl["States"].values()
            for sid in st.get("Parameters", {}).get("Payload", {}).get("deferrable", [])
        ],
    )
