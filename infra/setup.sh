#!/usr/bin/env bash
# Installs everything the project needs, idempotently; a second run only checks.
#   - Debian packages: a Java 17+ runtime (Spark), python3.11 with venv
#   - .venv with the exact lock (requirements.lock) and the hft package (editable)
# Fails with a clear message when something cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${HFT_PYTHON:-python3.11}
STAMP=$VENV/.hft-setup-stamp

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $* (or install them yourself)"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }

# 1. Java for Spark (17+).
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then
  say "installing a Java 17 runtime for Spark"
  apt_install openjdk-17-jre-headless
fi

# 2. Python 3.11.
if ! command -v "$PY" >/dev/null; then
  say "installing $PY"
  apt_install python3.11 python3.11-venv
fi

# 3. Virtualenv with the locked dependencies.
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  say "python environment up to date"
else
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV" || die "cannot create $VENV (is ${PY}-venv installed?)"; }
  say "installing locked dependencies into $VENV (first time: a few minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.lock || die "pip install -r requirements.lock failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . || die "pip install -e . failed"
  echo "$want" > "$STAMP"
fi

# 4. Sanity: the versions CI tested (pyspark and pyspark-client share one folder and must match).
"$VENV/bin/python" - <<'PY' || die "environment check failed (see above)"
import importlib.metadata as md
import pyspark
assert pyspark.__version__ == "4.2.0", f"pyspark {pyspark.__version__} != 4.2.0"
assert md.version("pyspark-client") == pyspark.__version__, "pyspark-client and pyspark versions differ"
import great_expectations, airflow, hft  # noqa: F401
PY
say "ready"
