# Sourced by the ops scripts: make .venv (when missing) and install the
# project into it, in development mode (the checkout itself is the package,
# so twistd, the CLI and the tests all run this tree).  The compiled build
# (setup.py: Cython, when a C compiler is present) puts its extension
# modules beside their sources; SIPCLUSTER_NO_EXTENSIONS=1 installs pure
# Python.  Reinstalls only when what the install depends on changed.
# Expects to be run from the repository root.
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv .venv
    fi
fi
# The stamp: what was installed ("." or ".[test]"...) and a hash of what the
# build depends on (packaging files, the compiled modules' sources, whether
# their extensions are there).  A plain "." is satisfied by any install.
_sipcluster_hash() {
    { echo "${SIPCLUSTER_NO_EXTENSIONS:-}"
      cat setup.py setup.cfg pyproject.toml
      .venv/bin/python -c 'from sipcluster.compiled import MODULES; print("\n".join(MODULES))' 2>/dev/null |
          while read -r m; do f=${m//.//}; cat "$f.py" "$f.pxd" 2>/dev/null; ls "$f".*.so 2>/dev/null; done
    } | sha256sum | cut -c1-16
}
_sipcluster_want=${SIPCLUSTER_INSTALL:-.}
read -r _sipcluster_had _sipcluster_hashed 2>/dev/null < .venv/.sipcluster-install || true
if [ "${_sipcluster_hashed:-}" != "$(_sipcluster_hash)" ] ||
        { [ "$_sipcluster_want" != . ] && [ "$_sipcluster_want" != "${_sipcluster_had:-}" ]; }; then
    # editable_mode=compat: the checkout on sys.path (a .pth), so that
    # twistd finds twisted/plugins/sipcluster_plugin.py in it.
    .venv/bin/pip install -q --disable-pip-version-check \
        --config-settings editable_mode=compat -e "$_sipcluster_want"
    if [ "$_sipcluster_want" = . ] && [ -n "${_sipcluster_had:-}" ]; then
        _sipcluster_want=$_sipcluster_had  # the extras installed before are still there
    fi
    echo "$_sipcluster_want $(_sipcluster_hash)" > .venv/.sipcluster-install
fi
unset -f _sipcluster_hash
unset _sipcluster_want _sipcluster_had _sipcluster_hashed
