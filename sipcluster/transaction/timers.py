# -*- test-case-name: tests.test_transaction -*-
"""The timer values of RFC 3261 17 and table 4, from T1, T2 and T4."""

from sipcluster.schema import ConfigSection, Key

CONFIG = ConfigSection("timers", {
    "t1_ms": Key(int, 500, "RFC 3261 T1, the round-trip estimate, in milliseconds.", minimum=10, maximum=60000),
    "t2_ms": Key(int, 4000, "RFC 3261 T2, the longest retransmit interval for non-INVITE requests and INVITE responses.",
                 minimum=100, maximum=600000),
    "t4_ms": Key(int, 5000, "RFC 3261 T4, how long a message may stay in the network.", minimum=100, maximum=600000),
    "timer_c_s": Key(int, 180, "RFC 3261 Timer C: how long a proxy waits for a final response to a forwarded INVITE, in seconds (> 180).",
                     minimum=1, maximum=3600),
})



class TimerValues:
    """
    Timer durations in seconds.

    @ivar t1: round-trip estimate (default 0.5 s).
    @ivar t2: longest retransmit interval for non-INVITE requests and
        INVITE responses (default 4 s).
    @ivar t4: how long a message may remain in the network (default 5 s).
    @ivar timer_c: how long a proxy waits for a final response to an INVITE
        (RFC 3261 16.6 step 11: more than 3 minutes).
    """

    def __init__(self, t1=0.5, t2=4.0, t4=5.0, timer_c=180.0):
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.timer_c = timer_c

    @classmethod
    def from_config(cls, timers):
        return cls(timers.t1_ms / 1000.0, timers.t2_ms / 1000.0,
                   timers.t4_ms / 1000.0, float(timers.timer_c_s))

    @property
    def timeout(self):
        """Timers B, F, H, J, L, M: 64*T1."""
        return 64 * self.t1

    @property
    def timer_d(self):
        """Timer D for unreliable transports: at least 32 s."""
        return max(32.0, 64 * self.t1)
