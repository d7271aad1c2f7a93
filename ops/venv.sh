# Sourced by the ops scripts: make .venv (when missing) and install the
# project into it.  Expects to be run from the repository root.
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv .venv
    fi
fi
.venv/bin/pip install -q --disable-pip-version-check "${SIPCLUSTER_INSTALL:-.}"
