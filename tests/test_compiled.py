"""
The compiled build (sipcluster.compiled, setup.py): which modules run
compiled, the switch back to pure Python, an edited source winning over a
stale build, and what C{sipcluster version} says.
"""

import importlib
import importlib.machinery
import os
import subprocess
import sys

import pytest

from sipcluster import compiled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(tmp_path, so_age):
    """A package 'fakepkg' with mod.py and a stand-in extension file that is
    C{so_age} seconds older (negative: newer) than the source."""
    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "mod.py"
    source.write_text("X = 1\n")
    extension = package / ("mod" + SUFFIX)
    extension.write_bytes(b"not loaded by find_spec")
    now = 1_700_000_000
    os.utime(source, (now, now))
    os.utime(extension, (now - so_age, now - so_age))
    return [str(package)]


def _finder():
    finder = compiled.SourceWhenAsked()
    finder.modules = frozenset(["fakepkg.mod"])
    return finder


def test_a_built_module_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.ENVIRONMENT, raising=False)
    monkeypatch.setattr(compiled, "stale", [])
    spec = _finder().find_spec("fakepkg.mod", _package(tmp_path, so_age=-10))
    assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    assert compiled.stale == []


def test_the_environment_asks_for_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv(compiled.ENVIRONMENT, "1")
    monkeypatch.setattr(compiled, "stale", [])
    spec = _finder().find_spec("fakepkg.mod", _package(tmp_path, so_age=-10))
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert spec.origin.endswith("mod.py")
    # Asked for, not stale.
    assert compiled.stale == []


@pytest.mark.parametrize("value", ["", "0"])
def test_an_empty_or_zero_variable_keeps_the_build(tmp_path, monkeypatch, value):
    monkeypatch.setenv(compiled.ENVIRONMENT, value)
    spec = _finder().find_spec("fakepkg.mod", _package(tmp_path, so_age=-10))
    assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def test_an_edited_source_wins_over_its_stale_build(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.ENVIRONMENT, raising=False)
    monkeypatch.setattr(compiled, "stale", [])
    spec = _finder().find_spec("fakepkg.mod", _package(tmp_path, so_age=10))
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert compiled.stale == ["fakepkg.mod"]


def _finder_with_dependency():
    finder = _finder()
    finder.cimports = {"fakepkg.mod": ("fakepkg.dep",)}
    return finder


def test_a_module_runs_as_source_where_a_module_it_cimports_does(tmp_path, monkeypatch):
    # Its compiled code would look for the other's C functions in a
    # compiled module that is not there, and fail to import.
    monkeypatch.delenv(compiled.ENVIRONMENT, raising=False)
    monkeypatch.setattr(compiled, "stale", [])
    path = _package(tmp_path, so_age=-10)
    (tmp_path / "fakepkg" / "dep.py").write_text("Y = 2\n")  # no extension: pure
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fakepkg", "fakepkg.dep"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(compiled, "following", [])
    spec = _finder_with_dependency().find_spec("fakepkg.mod", path)
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert compiled.stale == [] and compiled.following == ["fakepkg.mod"]
    assert sys.modules["fakepkg.dep"].Y == 2


def test_a_module_runs_compiled_where_the_modules_it_cimports_do(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.ENVIRONMENT, raising=False)
    monkeypatch.setattr(compiled, "stale", [])
    asked = []
    finder = _finder_with_dependency()
    monkeypatch.setattr(compiled, "following", [])
    monkeypatch.setattr(finder, "_runs_compiled", lambda name: asked.append(name) or True)
    spec = finder.find_spec("fakepkg.mod", _package(tmp_path, so_age=-10))
    assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    assert asked == ["fakepkg.dep"] and compiled.stale == [] and compiled.following == []


def test_the_cimports_named_are_those_of_the_pxd_files():
    import glob
    import re
    found = {}
    for pxd in glob.glob(os.path.join(ROOT, "sipcluster", "**", "*.pxd"), recursive=True):
        module = os.path.relpath(pxd[:-4], ROOT).replace(os.sep, ".")
        with open(pxd) as f:
            others = tuple(re.findall(r"^from (\S+) cimport ", f.read(), re.M))
        if others:
            found[module] = others
            assert all(other in compiled.MODULES for other in others), module
    assert found == compiled.CIMPORTS
    if not compiled.disabled():
        # Where the build runs, every module runs compiled with the modules
        # it cimports (or, stale, as source without them).
        for module, others in compiled.CIMPORTS.items():
            if compiled.is_compiled(importlib.import_module(module)):
                assert all(compiled.is_compiled(importlib.import_module(o)) for o in others), module


def test_other_modules_are_not_its_business(tmp_path):
    assert _finder().find_spec("fakepkg", [str(tmp_path)]) is None
    assert _finder().find_spec("json", None) is None


def test_only_uncompiled_modules_declare_interfaces():
    """zope.interface refuses compiled methods in an interface ("Concrete
    attribute"): no compiled module may define one."""
    for name in compiled.MODULES:
        with open(os.path.join(ROOT, name.replace(".", "/") + ".py")) as f:
            assert "(Interface)" not in f.read(), name


def _version(env):
    environment = dict(os.environ)
    environment.pop(compiled.ENVIRONMENT, None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sipcluster.cli", "version"], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=60)


def test_version_says_pure_python_when_asked():
    result = _version({compiled.ENVIRONMENT: "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sipcluster 0.1.0, pure Python (SIPCLUSTER_NO_EXTENSIONS is set)")


def test_the_suite_runs_the_build_it_expects():
    """
    ops/test sets SIPCLUSTER_EXPECT_BUILD=compiled for its compiled run, so
    that a build that silently fell back to pure Python (setup.py never
    fails an install) fails the suite instead of passing untested.
    """
    expected = os.environ.get("SIPCLUSTER_EXPECT_BUILD")
    if compiled.disabled():
        assert not any(compiled.is_compiled(importlib.import_module(name))
                       for name in compiled.MODULES)
        return
    if expected != "compiled":
        pytest.skip("no build expected (set SIPCLUSTER_EXPECT_BUILD=compiled)")
    result = _version({})
    assert result.returncode == 0, result.stderr
    assert ", compiled (%d modules, Cython)," % len(compiled.MODULES) in result.stdout
    from sipcluster.sip import message
    assert compiled.is_compiled(message)


def test_without_cython_its_decorators_do_nothing():
    class Thing:
        pass
    assert compiled.pure_cython.cclass(Thing) is Thing
    assert compiled.pure_cython.no_gc(Thing) is Thing


def test_compiled_messages_are_out_of_the_cyclic_collectors_reach():
    """
    In the compiled build the message, header and URI classes are extension
    types without GC tracking (the .pxd files and @cython.no_gc): a stateful
    node keeps thousands alive, and they can be in no cycle.  Pure Python
    tracks them as usual.
    """
    import gc
    from sipcluster.sip.message import parse_message
    from tests.sipdata import INVITE
    message = parse_message(INVITE)
    message.validate()
    parsed = [message, message.top_via, message.cseq, message.from_, message.uri]
    from sipcluster.sip import message as module
    if compiled.is_compiled(module):
        assert not any(gc.is_tracked(value) for value in parsed)
        # Nor the cache that holds only such values.
        assert not gc.is_tracked(message._cache)
    else:
        assert all(gc.is_tracked(value) for value in parsed)


def _declared(pxd):
    import re
    classes, current = {}, None
    with open(pxd) as f:
        for line in f:
            m = re.match(r"cdef class (\w+)", line)
            if m:
                current = classes.setdefault(m.group(1), [])
                continue
            m = re.match(r"\s+cdef (?:public|readonly) \w+ (\w+)", line) or re.match(
                r"\s+cdef dict (__dict__)$", line)
            if m and current is not None:
                current.append(m.group(1))
    return classes


def _slots(source):
    import ast
    with open(source) as f:
        tree = ast.parse(f.read())
    slots = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign) and any(
                        getattr(t, "id", None) == "__slots__" for t in item.targets):
                    slots[node.name] = list(ast.literal_eval(item.value))
    return slots


def test_every_pxd_declares_exactly_the_slots_of_its_classes():
    """
    A slot added to a class in the .py but not to its .pxd would pass every
    pure-Python test and fail the compiled build with AttributeError: the
    two must name the same fields (the .pxd adds only the class's own).
    """
    import glob
    pxds = glob.glob(os.path.join(ROOT, "sipcluster", "**", "*.pxd"), recursive=True)
    assert pxds
    for pxd in pxds:
        declared = _declared(pxd)
        slots = _slots(pxd[:-4] + ".py")
        assert declared or _functions_declared(pxd) or _cimported(pxd), pxd
        for name, fields in declared.items():
            assert sorted(fields) == sorted(slots[name]), (pxd, name)
        module = os.path.relpath(pxd[:-4], ROOT).replace(os.sep, ".")
        assert module in compiled.MODULES, module


def _cimported(pxd):
    with open(pxd) as f:
        return [line for line in f if line.startswith("from ") and " cimport " in line]


def _functions_declared(pxd):
    """The module functions a .pxd declares cpdef: name -> argument names."""
    import re
    functions = {}
    with open(pxd) as f:
        for line in f:
            m = re.match(r"cpdef (?:\w+ )?(\w+)\((.*)\)\s*$", line)
            if m:
                functions[m.group(1)] = [
                    arg.split("=")[0].split()[-1] for arg in m.group(2).split(",") if arg.strip()]
    return functions


def test_every_function_a_pxd_declares_is_a_plain_function_with_those_arguments():
    """
    A .pxd's cpdef declaration types a function of the .py beside it: the
    function must exist at module level, undecorated (mutmut does not
    mutate decorated functions, so the C types live in the .pxd), with the
    same arguments in the same order, or the compiled build would not
    build (and the module would run as pure Python).
    """
    import ast
    import glob
    seen = 0
    for pxd in glob.glob(os.path.join(ROOT, "sipcluster", "**", "*.pxd"), recursive=True):
        declared = _functions_declared(pxd)
        if not declared:
            continue
        with open(pxd[:-4] + ".py") as f:
            tree = ast.parse(f.read())
        functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        for name, args in declared.items():
            assert name in functions, (pxd, name)
            node = functions[name]
            assert not node.decorator_list, (pxd, name)
            assert [a.arg for a in node.args.args] == args, (pxd, name)
            seen += 1
    assert seen >= 9
