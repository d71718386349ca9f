"""Running one abuse case: the answer it must get, nothing issued, the ledger intact, the server alive."""

from __future__ import annotations

from dataclasses import dataclass

from custom_components.est_pairing.est import wire

from .cases import CLOSED, AbuseCase, Answer
from .target import Target


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a case got, and whether that is what it must get."""

    case: AbuseCase
    got: str  # a status code, "closed", or "skipped"
    problems: tuple[str, ...]
    reason: str = ""  # the server's one-line reason

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line for a report: verdict, expected and observed answer, name, and why."""
        verdict = "SKIP" if self.got == "skipped" else "PASS" if self.passed else "FAIL"
        why = "; ".join(self.problems) if self.problems else self.reason
        return f"{verdict}  expect {self.case.expected:<6} got {self.got:<7} {self.case.name}  -- {why}"


async def run_case(target: Target, case: AbuseCase) -> Verdict:
    """Run one case against the target and judge it."""
    if case.needs_owner_approval and target.auto_approve:
        return Verdict(case, "skipped", (), "the server approves every request itself (--auto-approve)")
    target.legitimate.clear()
    before = target.issued_serials()
    problems: list[str] = []
    answer: Answer = None
    try:
        answer = await case.attack(target)
    except AssertionError as err:
        problems.append(f"attack: {err}")
    problems += _judge(case, answer)
    after = target.issued_serials()  # the ledger must still parse
    if unexpected := after - before - target.legitimate:
        problems.append(f"ledger gained {len(unexpected)} certificate(s) nobody should have")
    if missing := target.legitimate - after:
        problems.append(f"{len(missing)} certificate(s) handed out but not in the ledger")
    if not await target.serves():
        problems.append("the server stopped answering")
    got = "closed" if answer is None else str(answer.status)
    reason = answer.reason_given if answer is not None and answer.status >= 400 else ""
    return Verdict(case, got, tuple(problems), reason)


def _judge(case: AbuseCase, answer: Answer) -> list[str]:
    if answer is None:
        return [] if case.expect is CLOSED else [f"closed without an answer, expected {case.expected}"]
    problems = []
    if case.expect is CLOSED:
        problems.append(f"answered {answer.status}; the connection should have been refused")
    elif answer.status != case.expect:
        problems.append(f"answered {answer.status}: {answer.reason_given[:120]}")
    if answer.status >= 500:
        problems.append("a 5xx")
    if answer.status >= 400:
        if not answer.is_one_line_refusal():
            problems.append("the refusal is not one line of text/plain (for a 401: no body)")
        if case.reason not in answer.reason_given:
            problems.append(f"the reason does not say {case.reason!r}")
    if answer.headers.get("content-type", "").startswith(wire.MULTIPART_MIXED) or (
        answer.headers.get("content-type") == wire.CERTS_ONLY and case.expect != 200
    ):
        problems.append("the abusive request got a certificate")
    return problems
