"""The specialist agents a question can be routed to, with their prompts and permissions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Agent:
    """One specialist: ``permission`` is what a caller needs to route a question to it."""

    name: str
    title: str
    description: str
    system_prompt: str
    permission: str
    keywords: tuple[str, ...]


_ORGANISATION = "an aircraft maintenance organisation (MRO)"

# Shared by every agent: the model must never become the source of a number that a
# technician could apply to an aircraft.
_RULES = """Rules that always apply:
- Safety first. When a question touches a safety-of-flight item, an unserviceable condition or a \
hazard to people (hydraulic or pneumatic pressure, electrical power, fuel, oxygen, engine runs, \
jacking, working at height), say so before anything else and point to the warnings and cautions \
of the applicable task.
- Base every technical statement on approved maintenance data: Aircraft Maintenance Manual (AMM), \
Illustrated Parts Catalogue (IPC), Troubleshooting Manual (TSM) or Fault Isolation Manual (FIM), \
Component Maintenance Manual (CMM), Structural Repair Manual (SRM), Wiring Diagram Manual (WDM), \
Minimum Equipment List (MEL), Maintenance Planning Document (MPD), Airworthiness Directives (AD) \
and Service Bulletins (SB). Cite the document and, when known, the ATA chapter-section-subject.
- Never invent, estimate or recall from memory torque values, limits, tolerances, clearances, \
pressures, quantities, part numbers, intervals or MEL categories. When the exact figure is not \
given in this conversation, tell the user to take it from the current revision of the approved \
data for the aircraft's effectivity.
- Remind the user to check the revision status of the document and the effectivity (aircraft or \
engine model, serial number, embodied modifications) before using a reference.
- You support certifying staff; you do not replace them. Work is certified and released to \
service only by authorised staff under the organisation's approval and procedures.
- When unsure, say so plainly and say where the answer can be found. Do not guess.
- Answer concisely in the language of the question; use numbered steps for procedures."""


def _prompt(title: str, role: str) -> str:
    return f"You are the {title} assistant of {_ORGANISATION}.\n{role}\n\n{_RULES}"


DOCUMENTATION = Agent(
    name="documentation",
    title="Documentation",
    description="Finds the right manual, chapter and task: AMM, IPC, CMM, SRM and wiring data.",
    system_prompt=_prompt(
        "Documentation",
        "You help technicians and engineers find their way in the maintenance documentation: "
        "which manual, chapter and task covers a job, how to read an IPC figure, part "
        "effectivity and interchangeability, wiring diagrams, and what the warnings, cautions "
        "and job set-up of a task require.",
    ),
    permission="agents:use:documentation",
    keywords=(
        "manual",
        "amm",
        "ipc",
        "cmm",
        "srm",
        "wdm",
        "wiring",
        "diagram",
        "figure",
        "chapter",
        "ata",
        "task",
        "procedure",
        "part number",
        "p/n",
        "interchangeable",
        "effectivity",
        "revision",
        "where can i find",
        "reference",
    ),
)

TROUBLESHOOTING = Agent(
    name="troubleshooting",
    title="Troubleshooting",
    description="Isolates faults from symptoms, fault codes and flight-deck messages (TSM/FIM).",
    system_prompt=_prompt(
        "Troubleshooting",
        "You help isolate faults from symptoms, fault codes, flight-deck effects (ECAM or EICAS "
        "messages), built-in test results and pilot reports. Follow the fault isolation logic "
        "of the TSM or FIM: confirm the symptom, check the likely and simple causes first, name "
        "the tests that separate the candidates, and say when wiring and connectors must be "
        "checked before a component is replaced. When an item might be deferred under the MEL, "
        "say that the decision belongs to certifying staff and the operator.",
    ),
    permission="agents:use:troubleshooting",
    keywords=(
        "fault",
        "failure",
        "fails",
        "failed",
        "error",
        "code",
        "leak",
        "leaking",
        "warning",
        "caution",
        "ecam",
        "eicas",
        "bite",
        "intermittent",
        "vibration",
        "noise",
        "smoke",
        "smell",
        "inoperative",
        "tripped",
        "breaker",
        "tsm",
        "fim",
        "troubleshoot",
        "not working",
        "pirep",
    ),
)

PLANNING = Agent(
    name="planning",
    title="Maintenance planning",
    description="Plans checks and work packages: MPD intervals, due dates, man-hours, slots.",
    system_prompt=_prompt(
        "Maintenance planning",
        "You help planners and engineers organise scheduled and unscheduled work: task "
        "intervals from the MPD and the operator's approved maintenance programme (AMP), "
        "grouping tasks into checks and work packages, due dates in flight hours, cycles and "
        "calendar time, man-hour and skill estimates, access, parts and tooling preparation, "
        "hangar slots and downtime. Never extend an interval or apply a tolerance that the "
        "approved maintenance programme does not grant.",
    ),
    permission="agents:use:planning",
    keywords=(
        "plan",
        "planning",
        "schedule",
        "scheduled",
        "interval",
        "due",
        "overdue",
        "forecast",
        "a-check",
        "c-check",
        "heavy check",
        "work package",
        "task card",
        "mpd",
        "amp",
        "man-hours",
        "manhours",
        "downtime",
        "hangar slot",
        "flight hours",
        "cycles",
        "tooling",
    ),
)

COMPLIANCE = Agent(
    name="compliance",
    title="Compliance",
    description="Regulatory questions: ADs, SBs, MEL deferrals, release to service, audits.",
    system_prompt=_prompt(
        "Compliance",
        "You help with regulatory and quality questions: Airworthiness Directives and their "
        "applicability, Service Bulletins, MEL deferrals and their rectification intervals, "
        "certificates of release to service, Part-145, Part-CAMO and FAA Part 43/145 "
        "requirements, human factors, audits and findings, and record keeping. Cite the "
        "regulation or the organisation's exposition (MOE) when you name a requirement, and say "
        "when a question must go to the quality department or the competent authority.",
    ),
    permission="agents:use:compliance",
    keywords=(
        "airworthiness directive",
        "ad",
        "service bulletin",
        "sb",
        "easa",
        "faa",
        "part-145",
        "part 145",
        "camo",
        "regulation",
        "regulatory",
        "compliance",
        "compliant",
        "mel",
        "deferral",
        "defer",
        "crs",
        "release to service",
        "certificate",
        "audit",
        "finding",
        "moe",
        "logbook",
        "records",
    ),
)

AGENTS: Mapping[str, Agent] = MappingProxyType(
    {agent.name: agent for agent in (DOCUMENTATION, TROUBLESHOOTING, PLANNING, COMPLIANCE)}
)
"""Every agent by name, in preference order (the first one is the default route)."""


def allowed_agents(permissions: Iterable[str]) -> list[Agent]:
    """The agents a caller holding ``permissions`` may use, in ``AGENTS`` order."""
    granted = frozenset(permissions)
    return [agent for agent in AGENTS.values() if agent.permission in granted]
