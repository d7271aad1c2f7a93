# The compiled build's declarations for status.py (Cython augmenting .pxd).
import cython

@cython.locals(reasons=dict)
cpdef reason_for(status)
