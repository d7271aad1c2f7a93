# -*- test-case-name: tests.test_transaction -*-
"""
The timer values of RFC 3261 17 and table 4, from T1, T2 and T4, and the
heap every transaction timer of a node runs on.
"""

import heapq
from collections import deque

from twisted.logger import Logger

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython

from sipcluster.schema import ConfigSection, Key

CONFIG = ConfigSection("timers", {
    "t1_ms": Key(int, 500, "RFC 3261 T1, the round-trip estimate, in milliseconds.", minimum=10, maximum=60000),
    "t2_ms": Key(int, 4000, "RFC 3261 T2, the longest retransmit interval for non-INVITE requests and INVITE responses.",
                 minimum=100, maximum=600000),
    "t4_ms": Key(int, 5000, "RFC 3261 T4, how long a message may stay in the network.", minimum=100, maximum=600000),
    "timer_c_s": Key(int, 180, "RFC 3261 Timer C: how long a proxy waits for a final response to a forwarded INVITE, in seconds (> 180).",
                     minimum=1, maximum=3600),
    "resolution_ms": Key(int, 10, "How finely transaction timers are kept: the timers due within one such step fire together, "
                         "at its end, each at most this late (as Kamailio's timer ticks of 1/16 s). 0: each at its own deadline.",
                         minimum=0, maximum=100),
})



@cython.cclass
class TimerValues:
    """
    Timer durations in seconds, fixed when made.

    @ivar t1: round-trip estimate (default 0.5 s).
    @ivar t2: longest retransmit interval for non-INVITE requests and
        INVITE responses (default 4 s).
    @ivar t4: how long a message may remain in the network (default 5 s).
    @ivar timer_c: how long a proxy waits for a final response to an INVITE
        (RFC 3261 16.6 step 11: more than 3 minutes).
    @ivar timeout: Timers B, F, H, J, L, M: 64*T1.
    @ivar timer_d: Timer D for unreliable transports: 64*T1, at least 32 s.
    @ivar resolution: the step the timers are kept to (L{TimerHeap}); 0,
        the default here, for none.
    """

    # (An extension type in the compiled build, its durations C doubles:
    # every transaction reads two or three of them.)
    __slots__ = ("t1", "t2", "t4", "timer_c", "timeout", "timer_d", "resolution")

    def __init__(self, t1=0.5, t2=4.0, t4=5.0, timer_c=180.0, resolution=0.0):
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.timer_c = timer_c
        self.timeout = 64 * t1
        self.timer_d = max(32.0, self.timeout)
        self.resolution = resolution

    @classmethod
    def from_config(cls, timers):
        return cls(timers.t1_ms / 1000.0, timers.t2_ms / 1000.0,
                   timers.t4_ms / 1000.0, float(timers.timer_c_s),
                   timers.resolution_ms / 1000.0)


# heapq's C functions, looked up once (compiled: a C call, no attribute
# of the module found at each use).
_heappush = heapq.heappush
_heappop = heapq.heappop

# How many delays get a queue of their own; timers of any other delay go
# to the heap.  A node arms a handful of distinct delays (T1 doubled up to
# T2, 64*T1, T4, Timer C, a destination's fr timeout).
MAX_QUEUES = 32


# In the compiled build (the .pxd beside this file) an extension type: its
# fields are C fields, read without a dictionary lookup at each timer.
@cython.cclass
class TimerHeap:
    """
    The transaction timers of one node on a single reactor timer, as
    Kamailio's tm keeps its timers in lists of its own rather than one
    system timer each.

    A stateful proxy arms about ten timers per call (A, B, D or M; E, F, K;
    G, H, I or L; J), most of them stopped within a second, and keeps tens
    of thousands armed at once (64*T1 = 32 s each).  As one Twisted
    DelayedCall each, every one is a Python object with its own bound
    methods in the reactor's heap, which orders them by calling
    C{DelayedCall.__lt__} (a Python method) about seventeen times per
    insertion.  Here a timer is a (time, number) pair and its callable and
    arguments are in a dict by number; one DelayedCall waits for the
    earliest deadline.

    Timers of the same delay, armed one after another on a clock that does
    not go back, come due in the order they were armed: each delay has a
    first-in first-out queue of its own (as tm has a list per timer kind),
    appended to and popped from its head in constant time.  A heap of tens
    of thousands of pairs costs a sift through its whole depth at every
    pop, and a cache miss at most levels of it.  Only timers of a delay
    beyond the first L{MAX_QUEUES}, or armed after the clock went back,
    go to a heap.

    A timer fires at its exact deadline, in deadline order (equal deadlines
    in the order they were armed), unless the heap has a resolution: then
    the reactor timer waits for the end of the step of that many seconds
    (counted from the clock's zero) in which the earliest deadline falls,
    and every timer due by then fires, in the same order, at most one step
    late.  A timer armed by a timer as it fires counts its delay from the
    firing one's deadline, not from the end of the step (but from no more
    than two steps ago: a heap woken late by a busy reactor does not catch
    up with a burst), so that a chain of them (Timer A's, E's, G's
    retransmissions) does not drift a step further behind at each link
    and fall after a Timer B counted from the start.  Under load a
    transaction ends every few hundred microseconds (Timers D, J, K, L,
    M), so a node armed for each deadline is woken for timers about as
    often as for datagrams, each wake-up a pass of the reactor's loop;
    with steps of 10 ms it is woken a hundred times a second at most, as
    Kamailio's timer runs in ticks of 1/16 s.  A protocol timer a few
    milliseconds late changes nothing on the wire that the network's own
    delays do not.  A stopped timer's pair stays in its
    queue or the heap until it comes up or they are compacted (when stopped
    pairs outnumber live timers).  With no timer armed, no DelayedCall is
    left in the reactor.

    @ivar clock: the IReactorTime it runs on.
    @ivar resolution: the step, in seconds (0: none, each timer at its
        deadline).
    """

    __slots__ = ("clock", "resolution", "_seconds", "_queues", "_heap", "_timers", "_entries",
                 "_number", "_call", "_call_at", "_running", "_base")

    log = Logger()

    def __init__(self, clock, resolution=0.0):
        if not resolution >= 0:
            raise ValueError("a timer resolution is 0 or more seconds, not %r" % (resolution,))
        self.clock = clock
        self.resolution = resolution
        self._seconds = clock.seconds
        self._queues = {}       # delay -> deque of (time, number), earliest first
        self._heap = []         # (time, number) of the timers not in a queue
        self._timers = {}       # number -> (callable, arguments) of the armed timers
        self._entries = 0       # pairs in the queues and the heap, stopped ones included
        self._number = 0        # the handle of the last timer armed
        self._call = None       # the DelayedCall for the earliest deadline
        self._call_at = None    # ... and that deadline
        self._running = False   # in _run: it arms the next DelayedCall itself
        self._base = 0.0        # in _run: the time a timer armed now counts from

    def __len__(self):
        """How many timers are armed."""
        return len(self._timers)

    def call_later(self, delay, fire, *args):
        """
        Call C{fire(*args)} in C{delay} seconds.  Returns a handle for
        L{cancel}.
        """
        return self.schedule(delay, fire, args)

    def schedule(self, delay, fire, args):
        """L{call_later} with the arguments as one tuple (compiled: a C call)."""
        when = (self._base if self._running else self._seconds()) + delay
        number = self._number = self._number + 1
        self._timers[number] = (fire, args)
        entry = (when, number)
        queue = self._queues.get(delay)
        if queue is None:
            if len(self._queues) < MAX_QUEUES:
                self._queues[delay] = deque((entry,))
            else:
                _heappush(self._heap, entry)
        elif queue and when < queue[-1][0]:
            _heappush(self._heap, entry)  # the clock went back
        else:
            queue.append(entry)
        self._entries += 1
        if not self._running and (self._call_at is None or when < self._call_at):
            self._arm(when)
        return number

    def cancel(self, handle):
        """Stop the timer C{handle}; nothing happens when it already fired or stopped."""
        if self._timers.pop(handle, None) is None:
            return
        if not self._timers:
            self._clear()
            if self._call is not None:  # (None while _run runs)
                self._call.cancel()
                self._call = self._call_at = None
        elif self._entries > 64 and self._entries > 2 * len(self._timers):
            self._compact()

    def _clear(self):
        # No timer armed: every pair left is a stopped one.  The queues stay
        # (a delay keeps its queue for the node's life), emptied in place.
        if self._entries:
            for queue in self._queues.values():
                queue.clear()
            del self._heap[:]
            self._entries = 0

    def _compact(self):
        # Mostly stopped timers: keep the live ones only, in the same
        # containers (new ones would be young to the cyclic collector, which
        # would walk their thousands of entries at its next pass).
        timers = self._timers
        entries = 0
        for queue in self._queues.values():
            live = [entry for entry in queue if entry[1] in timers]
            queue.clear()
            queue.extend(live)
            entries += len(live)
        heap = self._heap
        heap[:] = [entry for entry in heap if entry[1] in timers]
        heapq.heapify(heap)
        self._entries = entries + len(heap)

    def active(self, handle):
        """Whether the timer C{handle} is armed."""
        return handle in self._timers

    def scheduled(self):
        """The deadlines of the armed timers, earliest first."""
        timers = self._timers
        whens = [when for when, number in self._heap if number in timers]
        for queue in self._queues.values():
            whens.extend([when for when, number in queue if number in timers])
        whens.sort()
        return whens

    def _arm(self, when):
        # The reactor timer for the deadline when: at the end of its step,
        # when the heap has a resolution, and left as it is when armed for
        # that step already (steps are a resolution apart; the half is for
        # the rounding of floats).
        resolution = self.resolution
        if resolution > 0.0:
            rest = when % resolution
            if rest > 0.0:
                step_end = when - rest + resolution
                if step_end > when:
                    when = step_end
            if self._call is not None and when > self._call_at - resolution / 2:
                return
        if self._call is not None:
            self._call.cancel()
        self._call_at = when
        self._call = self.clock.callLater(max(0.0, when - self._seconds()), self._run)

    def _due(self, now):
        # The pairs due by now, taken from the queues' heads and the heap,
        # in (time, number) order.
        due = []
        for queue in self._queues.values():
            while queue and queue[0][0] <= now:
                due.append(queue.popleft())
        heap = self._heap
        while heap and heap[0][0] <= now:
            due.append(_heappop(heap))
        if len(due) > 1:
            due.sort()
        self._entries -= len(due)
        return due

    def _earliest(self):
        # The earliest deadline of a live timer, or None; the stopped pairs
        # ahead of it are let go.
        timers = self._timers
        earliest = None
        dropped = 0
        for queue in self._queues.values():
            while queue and queue[0][1] not in timers:
                queue.popleft()
                dropped += 1
            if queue and (earliest is None or queue[0][0] < earliest):
                earliest = queue[0][0]
        heap = self._heap
        while heap and heap[0][1] not in timers:
            _heappop(heap)
            dropped += 1
        if heap and (earliest is None or heap[0][0] < earliest):
            earliest = heap[0][0]
        self._entries -= dropped
        return earliest

    def _run(self):
        self._call = self._call_at = None
        self._running = True
        timers = self._timers
        earliest = None
        try:
            now = self._seconds()
            oldest = now - 2 * self.resolution   # (a step late, and the wake-up's own delay)
            for when, number in self._due(now):
                entry = timers.pop(number, None)
                if entry is None:
                    continue  # stopped
                self._base = when if when > oldest else oldest
                try:
                    entry[0](*entry[1])
                except Exception:
                    # As the reactor does for a failing DelayedCall:
                    # logged, and the other timers still fire.
                    # (A transaction's timer is its module's _fire with
                    # the transaction and the timer's name: the
                    # arguments say which timer it was.)
                    self.log.failure("transaction timer {fire!r}{args!r} failed",
                                     fire=entry[0], args=entry[1])
            earliest = self._earliest()
        finally:
            self._running = False
        if earliest is not None:
            # (Woken a last bit before a deadline, by rounding, it comes
            # back for it at once, or at the end of the step with a
            # resolution; so does a timer the ones above armed with no
            # delay.)
            self._arm(earliest)
