"""Schemathesis hooks of the contract test (scripts/contract-test.sh).

Each check below lets a schema-valid request's 400 stand only when it breaks
a rule infra/openapi.yaml states in words, never one the schema states.

A schema-valid request to schedule a deployment is refused (400) when it
breaks a rule infra/openapi.yaml can only state in words: the time is outside
the scheduling window, the date does not exist (2026-02-30), the local time
falls in a clock change's gap or overlap, or the time zone is not in the
database. Random times almost always do, so the script lets the built-in
positive_data_acceptance check take a 400 there; this check then makes sure
each such 400 is one of those rules, never one the schema states (a pattern,
a length, an e-mail address), which would be the spec and the API disagreeing.
"""

import json
import os
import re

import schemathesis
import yaml

SCHEDULE = "POST /environments/{env}/schedules"

_spec_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "infra", "openapi.yaml")
with open(_spec_path, encoding="utf-8") as f:
    _AT_PATTERN = yaml.safe_load(f)["components"]["schemas"]["LocalDateTime"].get("pattern")

# The API's wording of each rule (functions/core/src/schedule.rs).
_WINDOW = ("s ahead:", "at must be at most one year ahead")
_CLOCK_CHANGE = ("does not exist in", "happens twice in")
_UNKNOWN_ZONE = "is not an IANA time zone name"
_SHAPE = "must be a local date-time"


def _no_such_date(at: str) -> bool:
    """Whether `at` is `yyyy-mm-ddThh:mm[:ss]` with a month and day in range
    whose date does not exist (2026-02-30; proleptic Gregorian, as the API)."""
    m = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?", at)
    if m is None:
        return False
    year, month, day = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day > [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]


def _by_design(case, problem) -> bool:
    detail, field = problem.get("detail", ""), problem.get("field")
    if field == "timezone":
        return _UNKNOWN_ZONE in detail
    if field != "at":
        return False
    if any(m in detail for m in _WINDOW + _CLOCK_CHANGE):
        return True
    # "must be a local date-time" for an `at` of the documented shape: only
    # a date that does not exist. Any other is the pattern and the API disagreeing.
    at = (case.body or {}).get("at") if isinstance(case.body, dict) else None
    return (
        _SHAPE in detail
        and isinstance(at, str)
        and _AT_PATTERN is not None
        and re.fullmatch(_AT_PATTERN, at) is not None
        and _no_such_date(at)
    )


def _refusal_by_design(case, response, operation, by_design, what):
    """Fails a schema-valid `operation` request refused with 400 unless
    `by_design(case, problem)` says the refusal is a rule stated in words."""
    meta = case.meta
    if case.operation.label != operation or meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code != 400:
        return None
    try:
        problem = json.loads(response.content)
    except ValueError:
        problem = {}
    if not by_design(case, problem):
        raise AssertionError(
            f"A schema-valid {what} was refused for a rule the schema states: "
            f"{problem.get('field')}: {problem.get('detail')}"
        )
    return None


@schemathesis.check
def schedule_refusals_are_the_rules_stated_in_words(ctx, response, case):
    """A schema-valid schedule request refused with 400 broke a rule stated in words only."""
    return _refusal_by_design(case, response, SCHEDULE, _by_design, "schedule request")

ENVIRONMENT = "PUT /environments/{env}"
_PREFS = "defaults.refreshPreferences"


def _refresh_rule_in_words(case, problem) -> bool:
    """Whether `problem` is one of the two refresh-preference rules stated in
    words, and the request really breaks it."""
    body = case.body if isinstance(case.body, dict) else {}
    prefs = ((body.get("defaults") or {}).get("refreshPreferences")) or {}
    checkpoints = prefs.get("checkpointPercentages") or []
    field, detail = problem.get("field"), problem.get("detail", "")
    if field == f"{_PREFS}.checkpointPercentages" and "must be unique and in ascending order" in detail:
        return any(a >= b for a, b in zip(checkpoints, checkpoints[1:]))
    if field == f"{_PREFS}.checkpointDelaySeconds" and "AWS takes a checkpoint delay only with checkpoints" in detail:
        return prefs.get("checkpointDelaySeconds") is not None and not checkpoints
    return False


@schemathesis.check
def environment_refusals_are_the_rules_stated_in_words(ctx, response, case):
    """A schema-valid environment refused with 400 broke a rule stated in words only."""
    return _refusal_by_design(case, response, ENVIRONMENT, _refresh_rule_in_words, "environment")
