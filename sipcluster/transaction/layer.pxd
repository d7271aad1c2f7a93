# The compiled build's declarations for layer.py (Cython augmenting .pxd):
# the transaction layer as an extension type, calling its transactions and
# timer heap in C.
import cython

from sipcluster.sip.message cimport Message, Request
from sipcluster.sip.via cimport CSeq, Via
from sipcluster.transaction.timers cimport TimerHeap, TimerValues

@cython.locals(via=Via, branch=str)
cpdef server_key(Request request)
@cython.locals(sent_by=tuple)
cpdef str key_text(tuple key)

cdef class TransactionLayer:
    cdef public object transport
    cdef public object clock
    cdef public TimerValues timers
    cdef public TimerHeap timer_heap
    cdef public object tu
    cdef public dict servers
    cdef public dict clients
    cdef public object stats
    cpdef request_received(self, Request request, source)
    @cython.locals(via=Via, cseq=CSeq)
    cpdef response_received(self, Message response, source)
    @cython.locals(via=Via)
    cpdef start_client(self, Request request, peer, owner)
    cpdef remove(self, tx)
