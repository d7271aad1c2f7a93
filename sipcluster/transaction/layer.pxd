# The compiled build's declarations for layer.py (Cython augmenting .pxd):
# the transaction layer as an extension type, calling its transactions and
# timer heap in C.
from sipcluster.transaction.timers cimport TimerHeap

cpdef server_key(request)

cdef class TransactionLayer:
    cdef public object transport
    cdef public object clock
    cdef public object timers
    cdef public TimerHeap timer_heap
    cdef public object tu
    cdef public dict servers
    cdef public dict clients
    cdef public object stats
    cpdef request_received(self, request, source)
    cpdef response_received(self, response, source)
    cpdef start_client(self, request, peer, owner)
    cpdef remove(self, tx)
