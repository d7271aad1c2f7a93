# The compiled build's declarations for timers.py (Cython augmenting .pxd):
# the timer heap as an extension type, its fields C fields.
import cython

cdef class TimerHeap:
    cdef public object clock
    cdef public list _heap
    cdef public dict _timers
    cdef public object _number
    cdef public object _call
    cdef public object _call_at
    cdef public bint _running
    @cython.locals(timers=dict, heap=list)
    cpdef cancel(self, handle)
    cpdef _arm(self, when)
    cpdef schedule(self, delay, fire, tuple args)
