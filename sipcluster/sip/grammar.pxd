# The compiled build's declarations for grammar.py (Cython augmenting .pxd):
# the C types of the scanners' variables -- a character compared in C,
# indices as C integers, the text's str methods called directly.  Here and
# not as decorators in the .py: mutmut does not mutate decorated functions.
import cython

@cython.locals(part=str, parts=list, start=Py_ssize_t, i=Py_ssize_t, n=Py_ssize_t,
               c=Py_UCS4, quoted=bint, angle=bint)
cpdef list split_commas(str value)

@cython.locals(parts=list, start=Py_ssize_t, comma=Py_ssize_t, first=str, rest=str)
cpdef tuple split_first(str value)

cpdef remember(dict memo, key, value, Py_ssize_t size)
cpdef recall(dict memo, text, cls, Py_ssize_t size)
cpdef is_token(text)

@cython.locals(parts=list, start=Py_ssize_t, i=Py_ssize_t, n=Py_ssize_t, c=Py_UCS4,
               quoted=bint)
cpdef list split_semicolons(str text)

cpdef dict parse_params(str text, what=*)
@cython.locals(params=dict, item=str, name=str, eq=str, val=str)
cpdef dict params_of(list items, what=*)
cpdef str format_params(dict params)
cpdef unquote(str text)
cpdef str quote(str text)
