"""Jepsen-style histories: every answer either proxy gives is a state Juspay held recently enough.

Real processes on loopback (redis-server, the simulator, proxies A and B, B's Redis link
through a relay that can be cut); seeded order lifecycles with webhooks, purges, slow upstream
reads, Redis pauses and partitions; then a checker judges every answer (tests/history/).

HISTORY_SEEDS (e.g. "1,2,3" or "1-20") and HISTORY_SECONDS choose what runs; a failure prints
the seed and the offending answers with the order's timeline. `make check-history` runs many.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.history.checker import CROSS_REPLICA_BOUND, check, report, summary
from tests.history.driver import Cluster, Schedule, open_cluster, run_seed
from tests.history.model import Answer, Change, History, Invalidation, State
from tests.support.processes import RedisProcess
from tests.support.relay import Relay


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        seeds.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    return seeds


SEEDS = parse_seeds(os.environ.get("HISTORY_SEEDS", "1,2,3"))
SECONDS = float(os.environ.get("HISTORY_SECONDS", "8"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with open_cluster() as started:
        yield started


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(SECONDS + 60)
@pytest.mark.parametrize("seed", SEEDS)
async def test_every_answer_is_a_state_held_since_the_last_acknowledged_invalidation(
    cluster: Cluster, seed: int
) -> None:
    history = await run_seed(cluster, seed, Schedule(seconds=SECONDS))
    print(summary(history))
    violations = check(history)
    # The run exercised what it is meant to (else a pass would mean nothing).
    kinds = [a.kind for a in history.answers]
    enough = int(10 + 5 * SECONDS)
    assert len(history.answers) >= enough, summary(history)
    assert sum(1 for a in history.answers if a.http_status == 200) >= enough // 2, summary(history)
    assert "no-cache" in kinds, summary(history)
    assert {"get", "batch"} <= set(kinds), summary(history)
    assert any(i.source == "webhook" for i in history.invalidations), summary(history)
    assert len(history.changes) > len(history.orders), summary(history)
    replay = (
        f"HISTORY_SEEDS={seed} HISTORY_SECONDS={SECONDS:g} "
        ".venv/bin/pytest tests/test_history.py -k every_answer"
    )
    assert not violations, report(history, violations, replay=replay)


# --- the checker on hand-made histories ----------------------------------------------------

OLD, NEW = State("AUTHENTICATION_FAILED"), State("CHARGED")


def _history(*answers: Answer, invalidations: tuple[Invalidation, ...] = ()) -> History:
    """AUTHENTICATION_FAILED from t=0, CHARGED from somewhere in [10.0, 10.1]."""
    history = History(seed=0, t0=0.0, orders=["o1"])
    history.changes = [Change("o1", OLD, 0.0, 0.1, ""), Change("o1", NEW, 10.0, 10.1, "x")]
    history.invalidations = list(invalidations)
    history.answers = list(answers)
    return history


def _read(proxy: str, start: float, state: State, kind: str = "get", cache: str = "MISS") -> Answer:
    return Answer(1, kind, proxy, "o1", start, start + 0.05, 200, cache, state)


def test_the_checker_allows_an_old_state_until_an_invalidation_is_acknowledged() -> None:
    hook = Invalidation("o1", "A", 11.0, "webhook", "ORDER_SUCCEEDED: refreshed")
    fine = _history(_read("A", 10.5, OLD, cache="HIT"), invalidations=(hook,))
    assert check(fine) == []
    late = _history(_read("A", 11.2, OLD, cache="HIT"), invalidations=(hook,))
    [violation] = check(late)
    assert (violation.rule, violation.floor, violation.allowed) == ("stale", 11.0, (NEW,))
    assert "seed 0" in report(late, [violation])


def test_an_invalidation_acked_by_the_other_replica_binds_only_after_the_bound() -> None:
    hook = Invalidation("o1", "A", 11.0, "webhook", "ORDER_SUCCEEDED: refreshed")
    within = 11.0 + CROSS_REPLICA_BOUND - 0.1
    assert check(_history(_read("B", within, OLD, cache="HIT"), invalidations=(hook,))) == []
    after = 11.0 + CROSS_REPLICA_BOUND + 0.1
    assert len(check(_history(_read("B", after, OLD, cache="HIT"), invalidations=(hook,)))) == 1


def test_a_no_cache_read_must_return_a_state_held_after_it_began() -> None:
    assert check(_history(_read("A", 10.05, OLD, kind="no-cache"))) == []
    [violation] = check(_history(_read("A", 10.2, OLD, kind="no-cache")))
    assert violation.rule == "no-cache"


def test_a_cached_payment_in_progress_is_a_violation_and_errors_are_not_judged() -> None:
    [violation] = check(_history(_read("A", 1.0, State("PENDING_VBV"), cache="HIT")))
    assert violation.rule == "cached-in-progress"
    failed = Answer(2, "get", "A", "o1", 20.0, 21.0, 503, "", None)
    assert check(_history(failed)) == []


# --- the relay itself ---------------------------------------------------------------------


async def _ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"PING\r\n")
    await writer.drain()
    return await reader.readline()


async def test_a_cut_link_holds_bytes_back_and_delivers_them_once_restored(
    redis_server: RedisProcess,
) -> None:
    async with Relay(redis_server.port) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await _ping(reader, writer) == b"+PONG\r\n"
        relay.cut()
        pending = asyncio.ensure_future(_ping(reader, writer))
        # A new connection is accepted during the cut, but carries nothing either.
        late_reader, late_writer = await asyncio.open_connection("127.0.0.1", relay.port)
        late = asyncio.ensure_future(_ping(late_reader, late_writer))
        done, _ = await asyncio.wait({pending, late}, timeout=0.3)
        assert not done
        relay.restore()
        assert await pending == b"+PONG\r\n"
        assert await late == b"+PONG\r\n"
        for w in (writer, late_writer):
            w.close()


async def test_a_reset_aborts_current_connections_and_new_ones_work(
    redis_server: RedisProcess,
) -> None:
    async with Relay(redis_server.port) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await _ping(reader, writer) == b"+PONG\r\n"
        relay.reset()
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await _ping(reader, writer) == b"+PONG\r\n"
        writer.close()
