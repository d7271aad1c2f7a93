# The compiled build's declarations for status.py (Cython augmenting .pxd).
cpdef reason_for(status)
