"""The due rule at each of its boundaries, with the clock stated by the test, and the backoff as
`personas list` shows it on a store of known ticks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlmodel import Session

from persona_runner.catalog import Cadence
from persona_runner.reporting.formatting import utc_minute
from persona_runner.run.cadence import (
    BACKOFF_BASE,
    NextDue,
    PastTick,
    Reason,
    backoff,
    consecutive_failures,
    next_due,
)
from persona_runner.store.models import Persona
from persona_runner.store.views import recent_ticks
from tests.cli_helpers import cli
from tests.test_report import StoreBuilder

#: "Over an hour ago" first holds one step (a microsecond, a timestamp's finest) after the hour.
STEP = timedelta(microseconds=1)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def utc(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A moment in November 2026: the 16th is a Monday, the 20th a Friday, the 21st and 22nd the weekend."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


WED = utc(18, 12)
FRI = utc(20, 12)
SAT = utc(21, 12)
MONDAY_MIDNIGHT = utc(23)


def failed(count: int, latest: datetime, status: str = "failed") -> list[PastTick]:
    """`count` failed ticks, the latest started at `latest`, each one an hour before the next."""
    return [(latest - n * HOUR, status) for n in range(count)]


def case(
    name: str,
    cadence: Cadence,
    history: list[PastTick],
    now: datetime,
    *,
    at: datetime | None = None,
    reason: Reason = "cadence",
    failures: int = 0,
    every: timedelta | None = None,
) -> pytest.ParameterSet:
    """A row of the due rule's table: `at` is when the persona is next due, None when it is due at `now`."""
    expected = NextDue(at=at or now, due=at is None, reason=reason, failures=failures)
    return pytest.param(cadence, history, now, every, expected, id=name)


CASES = [
    # The cadence alone: due once the latest start is over the interval ago.
    case("hourly, a second before the hour", "hourly", [(WED, "ok")], WED + HOUR - SECOND, at=WED + HOUR + STEP),
    case("hourly, exactly the hour", "hourly", [(WED, "ok")], WED + HOUR, at=WED + HOUR + STEP),
    case("hourly, a step after the hour", "hourly", [(WED, "ok")], WED + HOUR + STEP),
    case("hourly, a second after the hour", "hourly", [(WED, "ok")], WED + HOUR + SECOND),
    case("daily, a second before 24 h", "daily", [(WED, "ok")], WED + DAY - SECOND, at=WED + DAY + STEP),
    case("daily, exactly 24 h", "daily", [(WED, "ok")], WED + DAY, at=WED + DAY + STEP),
    case("daily, a second after 24 h", "daily", [(WED, "ok")], WED + DAY + SECOND),
    case("daily, on a Saturday", "daily", [(FRI, "ok")], SAT + SECOND),
    case(
        "daily, past midnight UTC is not a new day",
        "daily",
        [(utc(18, 23, 30), "ok")],
        utc(19, 0, 30),
        at=utc(19, 23, 30) + STEP,
    ),
    case("the latest start counts", "hourly", [(WED - DAY, "ok"), (WED, "ok")], WED + MINUTE, at=WED + HOUR + STEP),
    # Weekdays: over 24 h, and Monday to Friday in UTC.
    case("weekdays, Thursday to Friday", "weekdays", [(utc(19, 12), "ok")], FRI + SECOND),
    case("weekdays, Friday to Saturday", "weekdays", [(FRI, "ok")], SAT + SECOND, at=MONDAY_MIDNIGHT),
    case("weekdays, a second before Monday", "weekdays", [(FRI, "ok")], MONDAY_MIDNIGHT - SECOND, at=MONDAY_MIDNIGHT),
    case("weekdays, Monday midnight UTC", "weekdays", [(FRI, "ok")], MONDAY_MIDNIGHT),
    case("weekdays, Friday 23:59:59 UTC is still Friday", "weekdays", [(utc(19, 12), "ok")], utc(20, 23, 59, 59)),
    case(
        "weekdays, Friday 23:30 UTC is Saturday in Kyiv but Friday in UTC",
        "weekdays",
        [(utc(19, 12), "ok")],
        utc(20, 23, 30).astimezone(timezone(timedelta(hours=2))),
    ),
    case(
        "weekdays, Saturday 00:30 in UTC is Friday in New York but Saturday in UTC",
        "weekdays",
        [(utc(19, 12), "ok")],
        utc(21, 0, 30).astimezone(timezone(timedelta(hours=-5))),
        at=MONDAY_MIDNIGHT,
    ),
    case("weekdays, 24 h after a weekend tick", "weekdays", [(utc(22, 12), "ok")], utc(23, 12), at=utc(23, 12) + STEP),
    # A persona that never ticked.
    case("never ticked, hourly", "hourly", [], WED, reason="never ticked"),
    case("never ticked, daily on a Saturday", "daily", [], SAT, reason="never ticked"),
    case("never ticked, weekdays on a Wednesday", "weekdays", [], WED, reason="never ticked"),
    case("never ticked, weekdays on a Saturday", "weekdays", [], SAT, at=MONDAY_MIDNIGHT, reason="never ticked"),
    # An interval from the caller (the soak's --every) replaces the cadence, weekday rule included.
    case(
        "every 10m, exactly 10 minutes",
        "daily",
        [(WED, "ok")],
        WED + 10 * MINUTE,
        at=WED + 10 * MINUTE + STEP,
        every=10 * MINUTE,
    ),
    case("every 10m, a second after", "daily", [(WED, "ok")], WED + 10 * MINUTE + SECOND, every=10 * MINUTE),
    case(
        "every 10m on a weekdays persona, on a Saturday",
        "weekdays",
        [(SAT, "ok")],
        SAT + 11 * MINUTE,
        every=10 * MINUTE,
    ),
    case("every 10m, never ticked, on a Saturday", "weekdays", [], SAT, reason="never ticked", every=10 * MINUTE),
    case(
        "every 2s caps the backoff",
        "hourly",
        failed(3, WED),
        WED + 3 * SECOND,
        reason="backoff",
        failures=3,
        every=2 * SECOND,
    ),
    # Backoff: 5 min after one failure, doubled for each further one, capped at the cadence.
    case(
        "1 failure, at 5 min",
        "hourly",
        failed(1, WED),
        WED + 5 * MINUTE,
        at=WED + 5 * MINUTE + STEP,
        reason="backoff",
        failures=1,
    ),
    case(
        "1 failure, a second after 5 min",
        "hourly",
        failed(1, WED),
        WED + 5 * MINUTE + SECOND,
        reason="backoff",
        failures=1,
    ),
    case(
        "2 failures, 10 min",
        "hourly",
        failed(2, WED),
        WED + 6 * MINUTE,
        at=WED + 10 * MINUTE + STEP,
        reason="backoff",
        failures=2,
    ),
    case("3 failures, 20 min", "daily", failed(3, WED), WED + 20 * MINUTE + SECOND, reason="backoff", failures=3),
    case(
        "4 failures, 40 min",
        "daily",
        failed(4, WED),
        WED + 30 * MINUTE,
        at=WED + 40 * MINUTE + STEP,
        reason="backoff",
        failures=4,
    ),
    case(
        "5 failures on hourly: 80 min capped at the hour",
        "hourly",
        failed(5, WED),
        WED + HOUR + SECOND,
        reason="backoff",
        failures=5,
    ),
    case(
        "9 failures on daily: 21 h 20 min",
        "daily",
        failed(9, WED),
        WED + HOUR,
        at=WED + 1280 * MINUTE + STEP,
        reason="backoff",
        failures=9,
    ),
    case(
        "10 failures on daily: capped at 24 h",
        "daily",
        failed(10, WED),
        WED + HOUR,
        at=WED + DAY + STEP,
        reason="backoff",
        failures=10,
    ),
    case(
        "timeouts are failures",
        "hourly",
        failed(2, WED, status="timeout"),
        WED,
        at=WED + 10 * MINUTE + STEP,
        reason="backoff",
        failures=2,
    ),
    case(
        "a failure on Friday night waits for Monday",
        "weekdays",
        failed(1, utc(20, 23, 58)),
        utc(21, 0, 5),
        at=MONDAY_MIDNIGHT,
        reason="backoff",
        failures=1,
    ),
    case(
        "a success ends the streak",
        "hourly",
        [(WED, "ok"), *failed(3, WED - MINUTE)],
        WED + 30 * MINUTE,
        at=WED + HOUR + STEP,
    ),
    case(
        "an unreadable rating ends the streak: the product answered",
        "hourly",
        [(WED, "rating_unparsed"), *failed(3, WED - MINUTE)],
        WED + 30 * MINUTE,
        at=WED + HOUR + STEP,
    ),
    case(
        "only the failures since the latest success count",
        "hourly",
        [*failed(2, WED), (WED - 2 * HOUR, "ok"), *failed(3, WED - 3 * HOUR)],
        WED,
        at=WED + 10 * MINUTE + STEP,
        reason="backoff",
        failures=2,
    ),
    case(
        "aborted and interrupted neither count nor end a streak, nor are they the latest start",
        "hourly",
        [(WED, "aborted"), (WED - MINUTE, "interrupted"), *failed(2, WED - 2 * MINUTE)],
        WED + 7 * MINUTE,
        at=WED - 2 * MINUTE + 10 * MINUTE + STEP,
        reason="backoff",
        failures=2,
    ),
    case(
        "aborted after a success is no failure, and leaves the persona due by the success",
        "hourly",
        [(WED, "aborted"), (WED - HOUR + 10 * MINUTE, "ok")],
        WED,
        at=WED + 10 * MINUTE + STEP,
    ),
    case(
        "a day cut short is lived again at once",
        "daily",
        [(WED, "interrupted"), (WED - 2 * DAY, "ok")],
        WED + MINUTE,
    ),
    case(
        "a tick still running is a start, not a failure",
        "hourly",
        [(WED, "running"), (WED - HOUR, "ok")],
        WED + 30 * MINUTE,
        at=WED + HOUR + STEP,
    ),
    case(
        "history in any order",
        "hourly",
        [(WED - 2 * HOUR, "ok"), (WED, "failed"), (WED - HOUR, "failed")],
        WED,
        at=WED + 10 * MINUTE + STEP,
        reason="backoff",
        failures=2,
    ),
]


@pytest.mark.parametrize(("cadence", "history", "now", "every", "expected"), CASES)
def test_due_rule(
    cadence: Cadence, history: list[PastTick], now: datetime, every: timedelta | None, expected: NextDue
) -> None:
    assert replace(next_due(cadence, history, now, every=every), since=None) == expected


def test_the_due_slot_is_the_same_whenever_it_is_asked() -> None:
    """Two schedulers asking at different moments name one slot, so the queue can tell a duplicate."""
    history: list[PastTick] = [(WED, "ok"), (WED - DAY, "failed")]
    asked = {next_due("hourly", history, WED + HOUR * k).since for k in (2, 3, 30)}
    assert asked == {WED + HOUR + STEP}
    assert next_due("hourly", [], WED).since is None
    assert next_due("hourly", [(WED, "aborted")], WED).since is None
    assert next_due("weekdays", [(FRI, "ok")], SAT + HOUR).since == FRI + DAY + STEP


def test_backoff_doubles_from_the_base_up_to_the_interval_even_after_a_long_streak() -> None:
    assert [backoff(k, DAY) for k in (1, 2, 3)] == [BACKOFF_BASE, 2 * BACKOFF_BASE, 4 * BACKOFF_BASE]
    assert backoff(10_000, DAY) == DAY


def test_consecutive_failures_reads_newest_first() -> None:
    assert consecutive_failures(["failed", "aborted", "timeout", "ok", "failed"]) == 2
    assert consecutive_failures(["ok", "failed"]) == 0
    assert consecutive_failures([]) == 0


def test_recent_ticks_reads_each_personas_latest_ticks_newest_first(store_url: str) -> None:
    store = StoreBuilder(store_url)
    store.run("r0", WED)
    for hours in range(5):
        store.tick("r0", "ann", WED + hours * HOUR, [], {}, offered=None, status="failed" if hours else "ok")
    store.tick("r0", "bob", WED, [], {}, offered=None)
    assert recent_ticks(store.engine, ["ann", "bob", "cid"], 3) == {
        "ann": [(WED + 4 * HOUR, "failed"), (WED + 3 * HOUR, "failed"), (WED + 2 * HOUR, "failed")],
        "bob": [(WED, "ok")],
    }
    store.engine.dispose()


def persona(store: StoreBuilder, user_id: str, cadence: str) -> None:
    """A persona row with its cadence as the store holds it: plain text, whatever wrote it."""
    with Session(store.engine) as session:
        session.add(
            Persona(
                user_id=user_id,
                email=f"{user_id}@personas.test",
                name=user_id.title(),
                archetype="tester",
                system_prompt="",
                tick_cadence=cadence,
            )
        )
        session.commit()


def listed_next_due(store_url: str) -> dict[str, str]:
    """The "next due" cell of each persona as `personas list` shows it."""
    done = cli("personas", "list", "--db", store_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "next due" in line)
    column = [cell.strip() for cell in header.split("┃")].index("next due")
    rows = [line.split("│") for line in lines if line.startswith("│")]
    return {cells[1].strip(): cells[column].strip() for cells in rows}


def test_personas_list_shows_when_each_persona_is_due_and_its_backoff(store_url: str) -> None:
    # The command reads the real clock: the ticks here are minutes old, the waits minutes from their ends.
    now = datetime.now(UTC).replace(microsecond=0)
    store = StoreBuilder(store_url)
    for user_id, cadence in [
        ("ann", "hourly"),
        ("bob", "daily"),
        ("cid", "hourly"),
        ("dee", "daily"),
        ("eve", "hourly"),
        ("fay", "fortnightly"),
    ]:
        persona(store, user_id, cadence)
    store.run("r0", now - DAY)
    # Ann: a failure, then a tick that went fine two hours ago: due by her cadence.
    store.tick("r0", "ann", now - 2 * HOUR - MINUTE, [], {}, offered=None, status="failed")
    store.tick("r0", "ann", now - 2 * HOUR, [], {}, offered=None)
    # Bob: three failures in a row, the latest a minute ago: next due 20 minutes after it.
    for minutes in (50, 20, 1):
        store.tick("r0", "bob", now - minutes * MINUTE, [], {}, offered=None, status="failed")
    # Cid: a timeout, then a tick the harness stopped: one failure, 5 minutes from the timeout's start.
    store.tick("r0", "cid", now - 3 * MINUTE, [], {}, offered=None, status="timeout")
    store.tick("r0", "cid", now - 2 * MINUTE, [], {}, offered=None, status="aborted")
    # Dee: one failure three hours ago: her retry is due, well before her daily cadence.
    store.tick("r0", "dee", now - 3 * HOUR, [], {}, offered=None, status="failed")
    # Eve never ticked; Fay's cadence is none the rule knows (the store holds plain text).
    store.engine.dispose()
    assert listed_next_due(store_url) == {
        "Ann": "now",
        "Bob": f"{utc_minute(now + 19 * MINUTE)}, backing off after 3 failures",
        "Cid": f"{utc_minute(now + 2 * MINUTE)}, backing off after 1 failure",
        "Dee": "now, retry after 1 failure",
        "Eve": "now",
        "Fay": "-",
    }


def test_personas_show_says_when_the_persona_is_next_due(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    now = datetime.now(UTC).replace(microsecond=0)
    store = StoreBuilder(db)
    persona(store, "bob", "daily")
    store.run("r0", now)
    store.tick("r0", "bob", now - MINUTE, [], {}, offered=None, status="failed")
    store.engine.dispose()
    shown = cli("personas", "show", "Bob", "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert f"next due {utc_minute(now + 4 * MINUTE)}, backing off after 1 failure" in shown.stdout
