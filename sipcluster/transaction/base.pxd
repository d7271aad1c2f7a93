# The compiled build's declarations for base.py (Cython augmenting .pxd):
# a transaction as an extension type, its timers armed on the layer's
# heap in C.
from sipcluster.transaction.timers cimport TimerHeap, TimerValues
from sipcluster.transport.layer cimport TransportLayer

cdef class Transaction:
    cdef public object layer
    cdef public TransportLayer transport
    cdef public object key
    cdef public object request
    cdef public object reliable
    cdef public object state
    cdef public TimerValues timers
    cdef public dict _timers
    cdef public TimerHeap _heap
    cpdef start_timer(self, name, delay)
    cpdef timer_fired(self, name)
    cpdef cancel_timer(self, name)
    cpdef timer_running(self, name)
    cpdef terminate(self)
