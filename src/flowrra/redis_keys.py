"""Every Redis key and channel name flowrra uses, built in this one module.

Broker keys of one queue share the hash tag ``{<queue>}``, so every script, which only
touches the keys of one queue, runs on Redis Cluster::

    <prefix>:{<queue>}:messages        hash    task id -> message (JSON), every live task
    <prefix>:{<queue>}:meta            hash    task id -> "<executor>|<priority>"
    <prefix>:{<queue>}:ready:<exec>    zset    ready ids of lane <queue>:<exec>
    <prefix>:{<queue>}:notify:<exec>   list    wake-up tokens for blocked claimers of that lane
    <prefix>:{<queue>}:delayed         zset    task id -> due time (ms)
    <prefix>:{<queue>}:leases          zset    task id -> lease deadline (ms)
    <prefix>:{<queue>}:tokens          hash    task id -> token of the current claim
    <prefix>:{<queue>}:deliveries      hash    task id -> claims of the current attempt
    <prefix>:{<queue>}:dead            zset    task id -> time buried (ms)
    <prefix>:{<queue>}:dead:reasons    hash    task id -> why it was buried
    <prefix>:{<queue>}:dead:messages   hash    task id -> its message as it was
    <prefix>:{<queue>}:seq             string  sequence for ordering and claim tokens
    <prefix>:{<queue>}:full            string  set while a producer waits for room

Two plain keys, never touched by scripts, list what exists: ``<prefix>:queues`` (set of
queue names) and ``<prefix>:lanes`` (set of lanes). Broker events (``idle:<queue>``,
``room:<queue>``, ``delayed:<queue>``) go to the pub/sub channel ``<prefix>:events``.

Result-backend keys share the hash tag ``{results}`` (one slot per prefix)::

    <prefix>:{results}:record:<task id>   string  TaskResult.to_dict as JSON
    <prefix>:{results}:state:<task id>    string  "<fence>|<status>": highest claim token
                                                  that wrote the record, and its status
    <prefix>:{results}:status:<status>    zset    task id -> time stored (ms), per status

Completions are published on ``<prefix>:{results}:done``, every stored record on
``<prefix>:{results}:updates``.

Worker telemetry (presence, throughput, task stats) uses the broker's prefix and the hash
tag ``{telemetry}``; see :class:`TelemetryKeys`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "flowrra"

_FORBIDDEN = frozenset("{}")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it can appear in a key (no braces, not empty); else ValueError."""
    if not name or _FORBIDDEN & set(name):
        raise ValueError(f"{kind} {name!r} must be non-empty and contain no '{{' or '}}'")
    return name


def split_lane(lane: str) -> tuple[str, str]:
    """``"<queue>:<executor>"`` -> ``(queue, executor)`` (the executor follows the last colon)."""
    queue, separator, executor = lane.rpartition(":")
    if not separator or not queue or not executor:
        raise ValueError(f"lane {lane!r} is not '<queue>:<executor>'")
    return queue, executor


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue of one broker prefix (all in the queue's hash slot)."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """The common start of every key of this queue."""
        return f"{self.prefix}:{{{self.queue}}}:"

    @property
    def ready_prefix(self) -> str:
        """Prefix of the ready zsets; the executor name completes it."""
        return self.base + "ready:"

    @property
    def notify_prefix(self) -> str:
        """Prefix of the wake-up lists; the executor name completes it."""
        return self.base + "notify:"

    def ready(self, executor: str) -> str:
        """The ready zset of lane ``<queue>:<executor>``."""
        return self.ready_prefix + executor

    def notify(self, executor: str) -> str:
        """The wake-up list of lane ``<queue>:<executor>``."""
        return self.notify_prefix + executor

    def fixed(self) -> list[str]:
        """The keys every broker script receives, in the order the scripts expect."""
        base = self.base
        return [
            base + "messages",
            base + "meta",
            base + "delayed",
            base + "leases",
            base + "tokens",
            base + "deliveries",
            base + "dead",
            base + "dead:reasons",
            base + "dead:messages",
            base + "seq",
            base + "full",
        ]

    @property
    def messages(self) -> str:
        """The hash of live messages."""
        return self.base + "messages"

    @property
    def delayed(self) -> str:
        """The delayed zset."""
        return self.base + "delayed"

    @property
    def leases(self) -> str:
        """The lease zset."""
        return self.base + "leases"

    @property
    def dead(self) -> str:
        """The dead-letter zset."""
        return self.base + "dead"

    @property
    def dead_reasons(self) -> str:
        """The reasons of dead letters."""
        return self.base + "dead:reasons"

    @property
    def dead_messages(self) -> str:
        """The messages of dead letters."""
        return self.base + "dead:messages"


@dataclass(frozen=True, slots=True)
class BrokerKeys:
    """The keys of one broker prefix."""

    prefix: str = DEFAULT_PREFIX

    def queue(self, name: str) -> QueueKeys:
        """The keys of queue ``name``."""
        return QueueKeys(self.prefix, check_name("queue name", name))

    @property
    def queues(self) -> str:
        """The set of queue names in use."""
        return f"{self.prefix}:queues"

    @property
    def lanes(self) -> str:
        """The set of lanes in use."""
        return f"{self.prefix}:lanes"

    @property
    def events(self) -> str:
        """The pub/sub channel of broker events."""
        return f"{self.prefix}:events"


@dataclass(frozen=True, slots=True)
class BackendKeys:
    """The keys of one result-backend prefix (all in the ``{results}`` slot)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def base(self) -> str:
        """The common start of every key of this backend."""
        return f"{self.prefix}:{{results}}:"

    def record(self, task_id: str) -> str:
        """The record of ``task_id``."""
        return f"{self.base}record:{task_id}"

    def state(self, task_id: str) -> str:
        """``"<fence>|<status>"`` of ``task_id``'s record (claim token and status index)."""
        return f"{self.base}state:{task_id}"

    def status(self, status: str) -> str:
        """The index of records in ``status``."""
        return f"{self.base}status:{status}"

    @property
    def record_prefix(self) -> str:
        """Prefix of record keys; the task id completes it."""
        return self.base + "record:"

    @property
    def state_prefix(self) -> str:
        """Prefix of state keys; the task id completes it."""
        return self.base + "state:"

    @property
    def status_prefix(self) -> str:
        """Prefix of status indexes; the status completes it."""
        return self.base + "status:"

    @property
    def updates(self) -> str:
        """The pub/sub channel every stored record is published on (JSON)."""
        return self.base + "updates"

    @property
    def done(self) -> str:
        """The pub/sub channel completions are announced on."""
        return self.base + "done"


@dataclass(frozen=True, slots=True)
class TelemetryKeys:
    """The keys of worker telemetry of one broker prefix (all in the ``{telemetry}`` slot)::

        <prefix>:{telemetry}:workers          zset    worker id -> last heartbeat (ms)
        <prefix>:{telemetry}:worker:<id>      string  the worker's presence (JSON), expires
        <prefix>:{telemetry}:minute:<start>   hash    succeeded/failed/retried of the minute
                                                      starting at <start> (UNIX s), expires
        <prefix>:{telemetry}:tasks            set     task names with stats
        <prefix>:{telemetry}:task:<name>      hash    outcome counts, duration sum and buckets
    """

    prefix: str = DEFAULT_PREFIX

    @property
    def base(self) -> str:
        """The common start of every telemetry key."""
        return f"{self.prefix}:{{telemetry}}:"

    @property
    def workers(self) -> str:
        """The index of workers by last heartbeat."""
        return self.base + "workers"

    def worker(self, worker_id: str) -> str:
        """The presence record of ``worker_id``."""
        return f"{self.base}worker:{worker_id}"

    def minute(self, start: int) -> str:
        """The throughput counts of the minute starting at ``start`` (UNIX seconds)."""
        return f"{self.base}minute:{start}"

    @property
    def tasks(self) -> str:
        """The set of task names with stats."""
        return self.base + "tasks"

    def task(self, name: str) -> str:
        """The stats of task ``name``."""
        return f"{self.base}task:{name}"
