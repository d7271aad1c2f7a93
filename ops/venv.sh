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
_sipcluster_stamp() {
    { echo "${SIPCLUSTER_INSTALL:-.} ${SIPCLUSTER_NO_EXTENSIONS:-}"
      cat setup.py setup.cfg pyproject.toml
      .venv/bin/python -c 'from sipcluster.compiled import MODULES; print("\n".join(MODULES))' 2>/dev/null |
          while read -r m; do f=${m//.//}; cat "$f.py"; ls "$f".*.so 2>/dev/null; done
    } | sha256sum | cut -c1-16
}
if [ "$(cat .venv/.sipcluster-install 2>/dev/null)" != "$(_sipcluster_stamp)" ]; then
    # editable_mode=compat: the checkout on sys.path (a .pth), so that
    # twistd finds twisted/plugins/sipcluster_plugin.py in it.
    .venv/bin/pip install -q --disable-pip-version-check \
        --config-settings editable_mode=compat -e "${SIPCLUSTER_INSTALL:-.}"
    _sipcluster_stamp > .venv/.sipcluster-install
fi
unset -f _sipcluster_stamp
