"""Whether the incident may be closed: the collector's verification, this run's probe and what failed.

Pure: no I/O. Three outcomes, each with its exit code:

- ``closable`` (0): the collector says ``may_close`` and the probe, when one ran here, passed;
- ``not_closable`` (1): the collector says not yet (each of its reasons), or the probe failed a
  threshold (each failed threshold);
- ``unverified`` (2): nothing says "not yet", but part of the check could not be made: the probe
  could not run, was inconclusive or errored, its result could not be stored, or the evidence
  bundle could not be written.

A known "not yet" wins over an unknown: when the collector refuses and the probe could not run,
the answer is ``not_closable`` (it cannot close whatever the probe would have said), and the reasons
name both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from skewwatch.verify.answer import Verification

Outcome = Literal["closable", "not_closable", "unverified"]
EXIT_CODES: dict[Outcome, int] = {"closable": 0, "not_closable": 1, "unverified": 2}


@dataclass(frozen=True)
class ProbeVerdict:
    """What this run's probe said: its verdict (``pass | fail | inconclusive | error``) and reasons."""

    verdict: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    @property
    def may_close(self) -> bool:
        return self.outcome == "closable"


def decide(v: Verification, probe: ProbeVerdict | None, problems: Sequence[str] = ()) -> Decision:
    """The decision; ``problems``: the parts of the check that could not be made (one line each)."""
    refusals: list[str] = []
    unknown: list[str] = list(problems)
    if not v.may_close:
        refusals += v.reasons or (
            "the collector says the incident may not be closed yet (it gave no reason)",
        )
    if probe is not None:
        lines = probe.reasons or ("(no reason given)",)
        if probe.verdict == "fail":
            refusals += [f"probe failed: {r}" for r in lines]
        elif probe.verdict != "pass":
            unknown += [f"probe {probe.verdict}: {r}" for r in lines]
    if refusals:
        return Decision("not_closable", (*refusals, *unknown))
    if unknown:
        return Decision("unverified", tuple(unknown))
    notes = list(v.reasons)  # a closable answer's reasons are notes (what was not judged, and why)
    if probe is not None:
        notes += [f"probe: {r}" for r in probe.reasons]
    return Decision("closable", tuple(notes))
