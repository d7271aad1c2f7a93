# The compiled build's declarations for timers.py (Cython augmenting .pxd):
# the timer heap as an extension type, its fields C fields.
import cython

cdef class TimerValues:
    cdef readonly double t1
    cdef readonly double t2
    cdef readonly double t4
    cdef readonly double timer_c
    cdef readonly double timeout
    cdef readonly double timer_d
    cdef readonly double resolution

cdef class TimerHeap:
    cdef public object clock
    cdef readonly double resolution
    cdef public object _seconds
    cdef public dict _queues
    cdef public list _heap
    cdef public dict _timers
    cdef public Py_ssize_t _entries
    cdef public object _number
    cdef public object _call
    cdef public object _call_at
    cdef public bint _running
    cdef public double _base
    cpdef cancel(self, handle)
    cpdef _clear(self)
    @cython.locals(timers=dict, heap=list, live=list, entries=Py_ssize_t)
    cpdef _compact(self)
    @cython.locals(resolution=double, rest=double, step_end=double)
    cpdef _arm(self, double when)
    cpdef schedule(self, delay, fire, tuple args)
    @cython.locals(due=list, heap=list)
    cpdef list _due(self, now)
    @cython.locals(timers=dict, heap=list, dropped=Py_ssize_t)
    cpdef _earliest(self)
