"""Changelog layout of distinct-count buckets: appended in chunks, rewritten now and then.

A distinct-count bucket (the active customers of a day, say) grows with every batch and
can hold a million members. Writing the whole set to the changelog on every commit made
stage 2's commits grow with the day (it was the largest single item of a profiled
worker), and a set beyond ~1M members would not even fit in one Kafka message. So a
bucket is stored as numbered *chunks*: chunk 0 holds the members as of the last full
write, each later commit appends one chunk with only the members added since; once a
bucket has ``max_chunks`` chunks, the next commit rewrites it whole (in as few chunks
of at most ``max_members`` as it takes) and deletes the chunks it no longer needs. The
bucket is the union of its chunks. Amortised, a commit writes the new members plus a
``1 / max_chunks`` share of the set.

Buckets created together (every dimension of a new day) reach ``max_chunks`` in the same
commit; rewriting all of them at once held the event loop for 1.8 s in a profiled worker.
So the rewrites of one commit share a budget of ``rewrite_budget`` members
(:meth:`begin_commit` refills it): a bucket whose rewrite is due but does not fit keeps
appending and is rewritten at a later commit, at the latest when it reaches twice
``max_chunks`` chunks. A restore reads at most ``2 * max_chunks`` messages per bucket.

Pure bookkeeping: which chunks to write or delete, each with its members in no
particular order (a chunk is read back as a set). The runtime owns the keys and bytes.
Chunks are not sorted: sorting a day's 600k members took 0.8 s of the event loop per
rewrite, five times the packing (2026-12-06).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from itertools import islice

# (chunk number, its members: the bucket's set itself, the fresh members' set or a part of
# the set as a list, to be encoded before the bucket changes again; None: delete the chunk)
Chunk = tuple[int, "Collection[int] | None"]

MAX_CHUNKS = 32
MAX_MEMBERS = 500_000  # 4 MB of packed hashes: well inside a Kafka message
# members rewritten per commit over all buckets, roughly (the first rewrite of a commit goes
# ahead whatever its size): packing 200,000 members takes ~0.08 s, which the runtime
# spreads over slices of the event loop
REWRITE_BUDGET = 200_000


class DistinctChunks:
    """How many chunks each bucket has in the changelog, and what to write next."""

    __slots__ = ("max_chunks", "max_members", "rewrite_budget", "budget_left", "counts")

    def __init__(self, max_chunks: int = MAX_CHUNKS, max_members: int = MAX_MEMBERS,
                 rewrite_budget: int = REWRITE_BUDGET) -> None:
        if max_chunks < 1 or max_members < 1 or rewrite_budget < 0:
            raise ValueError("max_chunks and max_members must be at least 1, rewrite_budget at least 0")
        self.max_chunks = max_chunks
        self.max_members = max_members
        self.rewrite_budget = rewrite_budget
        self.budget_left = rewrite_budget
        self.counts: dict[Hashable, int] = {}

    def begin_commit(self) -> None:
        """A new commit: its due rewrites share a fresh budget."""
        self.budget_left = self.rewrite_budget

    def plan(self, key: Hashable, members: set[int], fresh: set[int] | None) -> list[Chunk]:
        """Chunks to write for a bucket now holding ``members``, of which ``fresh`` were
        added since its last write (``None``: unknown or all of them, a new bucket)."""
        count = self.counts.get(key, 0)
        if fresh is not None and count > 0 and len(fresh) <= self.max_members:
            if count < self.max_chunks:
                due = False
            else:
                # due: it goes ahead if it fits what is left of the commit's budget or is the
                # commit's first rewrite (a bucket larger than the whole budget would otherwise
                # wait until forced, and every big bucket created together in the same
                # commit: 1.1-1.4 s of the event loop, measured); else it is postponed, up
                # to twice max_chunks
                due = (len(members) <= self.budget_left or self.budget_left == self.rewrite_budget > 0
                       or count >= 2 * self.max_chunks)
            if not due:
                if not fresh:
                    return []
                self.counts[key] = count + 1
                return [(count, fresh)]
        self.budget_left -= len(members)
        return self._rewrite(key, members, count)

    def _rewrite(self, key: Hashable, members: set[int], count: int) -> list[Chunk]:
        step = self.max_members
        parts: list[Chunk]
        if len(members) <= step:
            parts = [(0, members)]  # chunk 0 always exists, even empty: it marks the bucket as present
        else:
            it = iter(members)
            parts = [(i, list(islice(it, step))) for i in range(-(-len(members) // step))]
        self.counts[key] = len(parts)
        parts.extend((i, None) for i in range(len(parts), count))
        return parts

    def forget(self, key: Hashable) -> list[int]:
        """The bucket is gone: the chunk numbers to delete (chunk 0 included)."""
        return list(range(max(1, self.counts.pop(key, 1))))

    def restored(self, key: Hashable, chunks: int) -> None:
        """After a restore: the bucket's highest chunk in the changelog is ``chunks - 1``."""
        self.counts[key] = chunks


# --- a customer's dedupe ids ----------------------------------------------------------------------

# (chunk number, the ids it holds with their event times, in the order they were applied;
# None: delete the chunk)
IdChunk = tuple[int, "dict[str, int] | None"]

SPILL_AT = 256  # ids a customer record holds itself; beyond, they go to chunks (~12 KB of ids)
ID_MAX_CHUNKS = 32
ID_CHUNK_IDS = 50_000  # ids per chunk of a rewrite: ~2.4 MB with 36-character ids
# ids rewritten per commit over all customers, roughly (the first rewrite of a commit goes
# ahead whatever its size): 50,000 ids take ~3 ms to copy and encode
ID_REWRITE_BUDGET = 200_000


class IdChunks:
    """Changelog layout of the customers' dedupe ids (``CustomerState.seen``).

    A customer's record holds its ids itself while it has at most ``spill_at`` of them:
    that is nearly every customer, and their records stay as they were. A customer with
    more (a busy account: ten thousand events a day is ~470 KB of ids) would rewrite all
    of them with every commit that touches it, ten times a second while live; its ids go
    to numbered *chunks* instead, like stage 2's distinct-count buckets
    (:class:`DistinctChunks`): chunk 0 holds the ids as of the last full write, each later
    commit that applied new ids appends a chunk with just those, and once there are
    ``max_chunks`` the next commit rewrites them whole (in pieces of ``max_ids``) and
    deletes the chunks it no longer needs. Back at half ``spill_at`` ids or fewer, the
    ids return to the record and every chunk is deleted. As for distinct-count buckets,
    the rewrites of one commit share a budget of ``rewrite_budget`` ids
    (:meth:`begin_commit` refills it): a customer whose rewrite is due but does not fit
    keeps appending, at most until it has twice ``max_chunks`` chunks.

    The ids applied since the last write are found from the dict's order (ids are only
    ever appended; sweeps and the per-customer bound remove them): those after the last
    id written. If that id has been removed meanwhile, the chunks are rewritten. Chunks
    may hold ids removed since they were written: swept as too old to matter (a duplicate
    that old is dropped as late) or evicted by the bound. :meth:`restored` removes them
    again, in that order: the sweep's rule first, from the ids' own times, then the bound
    (a swept id counted against the bound would push out a newer one still needed).

    Pure bookkeeping: which chunks to write or delete. The runtime owns keys and bytes.
    """

    __slots__ = ("spill_at", "max_chunks", "max_ids", "rewrite_budget", "budget_left", "spilled")

    def __init__(self, spill_at: int = SPILL_AT, max_chunks: int = ID_MAX_CHUNKS,
                 max_ids: int = ID_CHUNK_IDS, rewrite_budget: int = ID_REWRITE_BUDGET) -> None:
        if spill_at < 1 or max_chunks < 1 or max_ids < 1 or rewrite_budget < 0:
            raise ValueError("spill_at, max_chunks and max_ids must be at least 1, rewrite_budget at least 0")
        self.spill_at = spill_at
        self.max_chunks = max_chunks
        self.max_ids = max_ids
        self.rewrite_budget = rewrite_budget
        self.budget_left = rewrite_budget
        # customer -> (chunks in the changelog, the last id written); only spilled customers
        self.spilled: dict[str, tuple[int, str]] = {}

    def begin_commit(self) -> None:
        """A new commit: its due rewrites share a fresh budget."""
        self.budget_left = self.rewrite_budget

    def plan(self, customer_id: str, seen: dict[str, int]) -> tuple[bool, list[IdChunk]]:
        """For a customer about to be written: whether its record holds its ids itself,
        and the chunks to write or delete with it."""
        entry = self.spilled.get(customer_id)
        if entry is None:
            if len(seen) <= self.spill_at:
                return True, []
            return False, self._rewrite(customer_id, seen, 0)
        count, last = entry
        if len(seen) <= self.spill_at // 2:
            del self.spilled[customer_id]
            return True, [(i, None) for i in range(count)]
        if count >= self.max_chunks and (
                len(seen) <= self.budget_left or self.budget_left == self.rewrite_budget > 0
                or count >= 2 * self.max_chunks):
            return False, self._rewrite(customer_id, seen, count)
        fresh: list[str] = []
        found = False
        for event_id in reversed(seen):
            if event_id == last:
                found = True
                break
            fresh.append(event_id)
            if len(fresh) > self.max_ids:
                break
        if not found:  # the last id written is gone, or too much is new: write them all
            return False, self._rewrite(customer_id, seen, count)
        if not fresh:
            return False, []
        fresh.reverse()
        self.spilled[customer_id] = (count + 1, fresh[-1])
        return False, [(count, {event_id: seen[event_id] for event_id in fresh})]

    def _rewrite(self, customer_id: str, seen: dict[str, int], count: int) -> list[IdChunk]:
        self.budget_left -= len(seen)
        step = self.max_ids
        items = iter(seen.items())
        parts: list[IdChunk] = [(i, dict(islice(items, step))) for i in range(-(-len(seen) // step))]
        self.spilled[customer_id] = (len(parts), next(reversed(seen)))
        parts.extend((i, None) for i in range(len(parts), count))
        return parts

    def restored(self, customer_id: str, seen: dict[str, int], chunks: dict[int, dict[str, int]],
                 bound: int, cutoff: int) -> None:
        """After a restore: add the customer's chunks (number -> ids) to ``seen``, in
        order, drop the ids older than ``cutoff`` (as the sweep did: the restored task's
        :meth:`Processor.dedupe_cutoff`), keep the last ``bound`` ids (as the per-customer
        bound did), and remember the chunks for the next write."""
        if not chunks:
            return
        last = ""
        for number in sorted(chunks):
            part = chunks[number]
            seen.update(part)
            if part:
                last = next(reversed(part))
        old = [event_id for event_id, ts in seen.items() if ts < cutoff]
        for event_id in old:
            del seen[event_id]
        if len(seen) > bound:
            for event_id in list(islice(iter(seen), len(seen) - bound)):
                del seen[event_id]
        # chunks numbered up to the highest one found: a rewrite deletes them all
        self.spilled[customer_id] = (max(chunks) + 1, last)
