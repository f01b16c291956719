"""Lua scripts of the Redis broker's management operations: dead letters and queue details.

These are not on the path of a task; they serve :class:`~flowrra.management.FlowrraManager`
and the ``flowrra dlq`` command. Each script starts with the common prelude of
:mod:`flowrra._lua` and so receives the same fixed keys of one queue and the same common
arguments (``ARGV[1..5]``); the ready zsets are built from the ready-zset prefix, which
carries the queue's hash tag, so every key a script touches lies in the queue's slot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowrra._lua import _BROKER_COMMON
from flowrra.brokers.base import QueueDetail

# ARGV[6] task id, ARGV[7] its dead-lettered message as the caller read it, ARGV[8]
# "<executor>|<priority>". Moves the task back to the end of its priority in its ready lane
# with no delivery counted. Returns 1, or 0 (nothing changed) when the id is not
# dead-lettered, its dead message changed since it was read, or a live task holds the id.
REQUEUE_DEAD = (
    _BROKER_COMMON
    + r"""
local id, body, meta = ARGV[6], ARGV[7], ARGV[8]
if redis.call('HGET', K_DEADB, id) ~= body then return 0 end
if not redis.call('ZSCORE', K_DEAD, id) then return 0 end
if redis.call('HEXISTS', K_MSG, id) == 1 then return 0 end
redis.call('ZREM', K_DEAD, id)
redis.call('HDEL', K_DEADR, id)
redis.call('HDEL', K_DEADB, id)
redis.call('HSET', K_MSG, id, body)
redis.call('HSET', K_META, id, meta)
redis.call('HDEL', K_DELIV, id)
make_ready(id, false)
return 1
"""
)

# ARGV[6] task id. Returns 1 if its dead letter was dropped, 0 if it had none.
DELETE_DEAD = (
    _BROKER_COMMON
    + r"""
local id = ARGV[6]
if redis.call('ZREM', K_DEAD, id) == 0 then return 0 end
redis.call('HDEL', K_DEADR, id)
redis.call('HDEL', K_DEADB, id)
return 1
"""
)

# Drops every dead letter of the queue. Returns how many there were.
PURGE_DEAD = (
    _BROKER_COMMON
    + r"""
local count = redis.call('ZCARD', K_DEAD)
redis.call('DEL', K_DEAD, K_DEADR, K_DEADB)
return count
"""
)

# ARGV[6..] the executors of the queue's lanes. Returns {delayed, in flight, dead} followed
# by one triple per priority level present in each lane: priority, ready count, and the
# submitted_at of the level's head (the next of that priority to run; '' if unknown).
# A level is one band of scores, (1000 - priority) * 2**41 .. + 2**41 (see flowrra._lua):
# one ZRANGEBYSCORE finds the next band's head, one ZCOUNT counts it.
DETAILS = (
    _BROKER_COMMON
    + r"""
local BAND = 2199023255552
local out = {
  redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASES), redis.call('ZCARD', K_DEAD)
}

local function submitted(id)
  local body = redis.call('HGET', K_MSG, id)
  if not body then return '' end
  local ok, message = pcall(cjson.decode, body)
  if ok and type(message) == 'table' and type(message.submitted_at) == 'string' then
    return message.submitted_at
  end
  return ''
end

for j = 6, #ARGV do
  local key = READY .. ARGV[j]
  local low = '-inf'
  while true do
    local head = redis.call('ZRANGEBYSCORE', key, low, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #head == 0 then break end
    local band = math.floor(tonumber(head[2]) / BAND)
    local high = string.format('%.0f', (band + 1) * BAND)
    out[#out + 1] = 1000 - band
    out[#out + 1] = redis.call('ZCOUNT', key, low, '(' .. high)
    out[#out + 1] = submitted(head[1])
    low = high
  end
end
return out
"""
)

SOURCES: dict[str, str] = {
    "requeue_dead": REQUEUE_DEAD,
    "delete_dead": DELETE_DEAD,
    "purge_dead": PURGE_DEAD,
    "details": DETAILS,
}
"""The scripts above by name."""


def _age(submitted_at: bytes | str, now: datetime) -> float | None:
    value = submitted_at.decode() if isinstance(submitted_at, bytes) else submitted_at
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a naive submission time is UTC
    return max(0.0, (now - when).total_seconds())


def parse_details(queue: str, reply: list[Any], now: datetime) -> QueueDetail:
    """The :class:`QueueDetail` of ``queue`` from a :data:`DETAILS` reply read at ``now``."""
    delayed, in_flight, dead = (int(value) for value in reply[:3])
    by_priority: dict[int, int] = {}
    oldest: float | None = None
    for index in range(3, len(reply), 3):
        priority, ready = int(reply[index]), int(reply[index + 1])
        by_priority[priority] = by_priority.get(priority, 0) + ready
        age = _age(reply[index + 2], now)
        if age is not None and (oldest is None or age > oldest):
            oldest = age
    by_priority = dict(sorted(by_priority.items(), reverse=True))
    return QueueDetail(
        queue, sum(by_priority.values()), by_priority, delayed, in_flight, dead, oldest
    )
