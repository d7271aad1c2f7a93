# The compiled build's declarations for context.py (Cython augmenting .pxd):
# the branches and the response context as extension types, the context
# calling its proxy and timers in C.
from sipcluster.proxy.stateful cimport StatefulProxy
from sipcluster.transaction.timers cimport TimerHeap

cdef class Branch:
    cdef public object target
    cdef public object tx
    cdef public object response
    cdef public object done
    cdef public object timer_c
    cdef public object timer_fr
    cdef public object index

cdef class ResponseContext:
    cdef public StatefulProxy proxy
    cdef public object context
    cdef public object request
    cdef public list groups
    cdef public TimerHeap timer_heap
    cdef public object timer_c
    cdef public list branches
    cdef public object final_sent
    cdef public object cancelled
    cdef public object no_new_branches
    cdef public object is_invite
    cdef public object _starting
    cdef public object _asking
    cpdef start(self)
    cpdef _next_group(self)
    cpdef branch_started(self, branch, tx, owner)
    cpdef branch_failed(self, branch, status, reason=*)
    cpdef response_received(self, tx, response)
    cpdef timed_out(self, tx)
    cpdef transport_failed(self, tx)
    cpdef _branch_of(self, tx)
    cpdef _complete(self, Branch branch, response)
    cpdef cancel(self)
    cpdef _cancel_pending(self)
    cpdef _check_done(self)
    cpdef _send_best(self)
