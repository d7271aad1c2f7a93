# -*- test-case-name: tests.test_compiled -*-
"""
The compiled build: which modules C{pip install} compiles with Cython (the
message layer, transports, transactions and the proxy core: what every
message crosses), and which build is running.

There is one source.  The compiled build is the same Python files compiled
in Cython's pure-Python mode, as the aio-libs projects ship theirs (yarl,
multidict, frozenlist: Cython with a pure-Python fallback); without a C
compiler or Cython the package installs and runs as pure Python.  At run
time a compiled module is used unless C{SIPCLUSTER_NO_EXTENSIONS} is set in
the environment, or its source file is newer than it (an edited checkout
whose extensions were not rebuilt runs the edited source, and says so).
"""

import importlib.machinery
import importlib.util
import os
import sys

# Modules compiled by setup.py.  Interfaces stay pure Python (zope.interface
# reads an interface's methods as plain functions): each package keeps them
# in its uncompiled interfaces module.
MODULES = (
    "sipcluster.sip.address",
    "sipcluster.sip.errors",
    "sipcluster.sip.framing",
    "sipcluster.sip.grammar",
    "sipcluster.sip.headers",
    "sipcluster.sip.message",
    "sipcluster.sip.status",
    "sipcluster.sip.uri",
    "sipcluster.sip.via",
    "sipcluster.transport.base",
    "sipcluster.transport.layer",
    "sipcluster.transport.tcp",
    "sipcluster.transport.udp",
    "sipcluster.transaction.base",
    "sipcluster.transaction.client",
    "sipcluster.transaction.layer",
    "sipcluster.transaction.server",
    "sipcluster.transaction.timers",
    "sipcluster.proxy.context",
    "sipcluster.proxy.core",
    "sipcluster.proxy.forwarding",
    "sipcluster.proxy.pipeline",
    "sipcluster.proxy.stateful",
    "sipcluster.proxy.stateless",
    # The target stages every request asks (a node's default routing),
    # the registrar's first among them.
    "sipcluster.registrar.registrar",
    "sipcluster.routing.local",
    "sipcluster.routing.location",
    # The node's reactor: its poll loop runs at every wake-up.
    "sipcluster.reactor",
)

# What each compiled module calls of the others as C functions, not through
# Python: the cimports of its .pxd (tests/test_compiled.py checks the two
# agree).  A module finds those functions in the other's compiled module, so
# it runs compiled only where each of these does.
CIMPORTS = {
    "sipcluster.sip.headers": ("sipcluster.sip.grammar",),
    "sipcluster.sip.uri": ("sipcluster.sip.grammar",),
    "sipcluster.sip.via": ("sipcluster.sip.grammar", "sipcluster.sip.uri"),
    "sipcluster.sip.address": ("sipcluster.sip.grammar", "sipcluster.sip.uri"),
    "sipcluster.sip.message": ("sipcluster.sip.address", "sipcluster.sip.grammar",
                               "sipcluster.sip.headers", "sipcluster.sip.status",
                               "sipcluster.sip.uri", "sipcluster.sip.via"),
    "sipcluster.transport.base": ("sipcluster.sip.message", "sipcluster.sip.uri", "sipcluster.sip.via"),
    "sipcluster.transport.layer": ("sipcluster.sip.grammar", "sipcluster.sip.message",
                                   "sipcluster.sip.uri", "sipcluster.transport.base"),
    "sipcluster.transaction.base": ("sipcluster.transaction.timers", "sipcluster.transport.layer"),
    "sipcluster.transaction.client": ("sipcluster.sip.message", "sipcluster.transaction.base"),
    "sipcluster.transaction.server": ("sipcluster.sip.message", "sipcluster.transaction.base"),
    "sipcluster.transaction.layer": ("sipcluster.sip.message", "sipcluster.sip.via",
                                     "sipcluster.transaction.timers"),
    "sipcluster.proxy.forwarding": ("sipcluster.sip.grammar", "sipcluster.sip.message",
                                    "sipcluster.sip.uri", "sipcluster.sip.via", "sipcluster.transport.base",
                                    "sipcluster.transport.layer"),
    "sipcluster.proxy.pipeline": ("sipcluster.sip.message", "sipcluster.transaction.server",
                                  "sipcluster.transport.base"),
    "sipcluster.proxy.core": ("sipcluster.proxy.forwarding", "sipcluster.proxy.pipeline",
                              "sipcluster.sip.message"),
    "sipcluster.proxy.stateless": ("sipcluster.proxy.core", "sipcluster.proxy.forwarding",
                                   "sipcluster.proxy.pipeline", "sipcluster.sip.message",
                                   "sipcluster.sip.via", "sipcluster.transport.base",
                                   "sipcluster.transport.layer"),
    "sipcluster.proxy.stateful": ("sipcluster.proxy.core", "sipcluster.proxy.forwarding",
                                  "sipcluster.proxy.pipeline", "sipcluster.proxy.stateless",
                                  "sipcluster.sip.message", "sipcluster.sip.via",
                                  "sipcluster.transaction.layer", "sipcluster.transaction.server",
                                  "sipcluster.transaction.timers",
                                  "sipcluster.transport.base"),
    "sipcluster.proxy.context": ("sipcluster.proxy.stateful", "sipcluster.transaction.timers"),
}

ENVIRONMENT = "SIPCLUSTER_NO_EXTENSIONS"

# Modules whose compiled file was passed over because the source is newer,
# and those passed over because a module whose C functions they call runs
# as source.
stale = []
following = []


class pure_cython:
    """
    What the compiled modules use of Cython's pure-Python mode (the
    C{cython} module), for pure Python where Cython is not installed: its
    class decorators, doing nothing.  (The C types of variables are in the
    .pxd files, which only Cython reads.)
    """

    compiled = False

    @staticmethod
    def cclass(cls):
        return cls

    no_gc = cclass


def disabled():
    """Whether the environment asks for pure Python."""
    return os.environ.get(ENVIRONMENT, "") not in ("", "0")


class SourceWhenAsked:
    """
    A meta path finder for the compiled modules: the extension module
    unless pure Python is asked for, the source was edited after the build,
    or a module whose C functions it calls (L{CIMPORTS}) runs as source; in
    those cases the source.  Other modules are not its business.
    """

    modules = frozenset(MODULES)
    cimports = CIMPORTS

    def find_spec(self, name, path, target=None):
        if name not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec
        source = os.path.join(os.path.dirname(spec.origin), name.rpartition(".")[2] + ".py")
        try:
            edited = os.stat(source).st_mtime > os.stat(spec.origin).st_mtime
        except OSError:
            return spec
        if not disabled():
            if edited:
                stale.append(name)
            elif all(self._runs_compiled(other) for other in self.cimports.get(name, ())):
                return spec
            else:
                following.append(name)
        return importlib.util.spec_from_file_location(name, source)

    @staticmethod
    def _runs_compiled(name):
        # Imported first (the cimports have no cycles): then it is known
        # which of its files runs.
        return is_compiled(importlib.import_module(name))

    def invalidate_caches(self):
        pass


def install():
    """Put the finder in front of the path finder (once)."""
    if not any(isinstance(finder, SourceWhenAsked) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourceWhenAsked())


def is_compiled(module):
    return not module.__file__.endswith((".py", ".pyc"))


def build():
    """
    Which build runs, in words, for C{sipcluster version} and the start-up
    line: "compiled (24 of 24 modules)", "pure Python (...)".
    """
    modules = [importlib.import_module(name) for name in MODULES]
    compiled = sum(1 for module in modules if is_compiled(module))
    if compiled == len(modules):
        return "compiled (%d modules, Cython)" % compiled
    if compiled:
        text = "partly compiled (%d of %d modules)" % (compiled, len(modules))
    elif disabled():
        return "pure Python (%s is set)" % ENVIRONMENT
    else:
        text = "pure Python (not compiled at install)"
    if stale:
        text += "; source newer than the build, run as source: %s" % _named(stale)
    if following:
        text += "; run as source with a module they call: %s" % _named(following)
    return text


def _named(modules):
    return ", ".join(name.rpartition("sipcluster.")[2] for name in modules)
