"""Split tests: the path each contact took, conversions per path, and the automatic winner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import constants as C
from shared.store.contacts import ContactStore, contact_pk
from shared.workflow.runtime import SplitStep, Winner

STATS_SK = "STATS"


def stats_pk(workflow: str, step: str) -> str:
    return f"SPLIT#{workflow}#{step}"


def assignment_sk(workflow: str, step: str) -> str:
    return f"SPLIT#{workflow}#{step}"


@dataclass
class Verdict:
    """A split's winner, once chosen, with the rates that chose it."""

    path: str
    why: str


def rates(stats: dict[str, Any], paths: list[str]) -> dict[str, tuple[int, int]]:
    """(contacts, conversions) per path."""
    return {p: (int(stats.get(f"n_{p}", 0)), int(stats.get(f"c_{p}", 0))) for p in paths}


def describe(counts: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{p} {c}/{n} = {100 * c / n:.1f}%" if n else f"{p} 0/0" for p, (n, c) in counts.items())


class SplitTests:
    def __init__(self, store: ContactStore) -> None:
        self.store = store

    def stats(self, workflow: str, step: str) -> dict[str, Any]:
        return self.store.get_item(stats_pk(workflow, step), STATS_SK) or {}

    def verdict(self, workflow: str, step: str, split: SplitStep, now: datetime) -> Verdict | None:
        """The winner if chosen, or chosen now when every path has enough contacts, some converted and
        `after` has passed since the first contact.
        Only the first decision is kept (a conditional write), so concurrent contacts agree."""
        winner = split.winner
        if winner is None:
            return None
        stats = self.stats(workflow, step)
        if stats.get("winner"):
            return Verdict(stats["winner"], f"winner {stats['winner']} chosen {stats['decided_at']}: {stats['basis']}")
        paths = [p.name for p in split.split]
        counts = rates(stats, paths)
        if any(n < winner.min_contacts for n, _ in counts.values()) or not any(c for _, c in counts.values()):
            return None
        if now < datetime.fromisoformat(stats["first_at"]) + timedelta(seconds=winner.after):
            return None
        # Highest conversion rate; a tie goes to the path written first.
        best = max(paths, key=lambda p: (counts[p][1] / counts[p][0], -paths.index(p)))
        basis = f"by {winner.by}: {describe(counts)}"
        decided = self.store.transact(
            [
                self.store.update_if(
                    stats_pk(workflow, step),
                    STATS_SK,
                    {"winner": best, "decided_at": now.isoformat(), "basis": basis},
                    "attribute_not_exists(winner)",
                )
            ]
        )
        if not decided:  # another contact decided first: follow that decision
            return self.verdict(workflow, step, split, now)
        return Verdict(best, f"winner {best} chosen {now.isoformat()}: {basis}")

    def assignment_writes(
        self,
        contact_id: str,
        workflow: str,
        step: str,
        split: SplitStep,
        path: str,
        path_steps: list[str],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Writes to commit with the split's history record: the contact's path and the path's count."""
        winner: Winner | None = split.winner
        writes = [self.store.add(stats_pk(workflow, step), STATS_SK, {f"n_{path}": 1}, {"first_at": now.isoformat()})]
        if winner is not None:
            writes.append(
                self.store.put(
                    {
                        C.PK: contact_pk(contact_id),
                        C.SK: assignment_sk(workflow, step),
                        "workflow": workflow,
                        "step": step,
                        "path": path,
                        "by": winner.by,
                        "goal": winner.goal,
                        "path_steps": path_steps,
                        "at": now.isoformat(),
                        "converted": False,
                    }
                )
            )
        return writes

    def convert(
        self,
        contact_id: str,
        by: str,
        now: datetime,
        *,
        workflow: str = "",
        goal: str = "",
        message: dict | None = None,
    ) -> list[str]:
        """Count a conversion for each split test the contact is in that measures `by` and has not counted
        this contact yet. Returns `workflow/step/path` of each counted; a second call counts nothing."""
        out = []
        for a in self.store.query_prefix(contact_pk(contact_id), "SPLIT#"):
            if a.get("converted") or a.get("by") != by:
                continue
            if by == "goal" and (a["workflow"] != workflow or (a.get("goal") and a["goal"] != goal)):
                continue
            if by != "goal" and (
                message is None
                or message.get("workflow") != a["workflow"]
                or message.get("step") not in a["path_steps"]
            ):
                continue
            counted = self.store.transact(
                [
                    self.store.update_if(
                        a[C.PK],
                        a[C.SK],
                        {"converted": True, "converted_at": now.isoformat()},
                        "attribute_exists(#pk) AND converted = :no",
                        {":no": False},
                    ),
                    self.store.add(stats_pk(a["workflow"], a["step"]), STATS_SK, {f"c_{a['path']}": 1}),
                ]
            )
            if counted:
                out.append(f"{a['workflow']}/{a['step']}/{a['path']}")
        return out
