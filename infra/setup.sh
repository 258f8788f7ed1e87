#!/usr/bin/env bash
# Installs everything the project needs, idempotently; a second run only checks.
#   - Debian packages: a Java 17+ runtime (Spark), python3.11 with venv
#   - .venv with the exact lock (requirements.lock) and the hft package (editable)
#   - the local stack (hft stack up): redis-server from Debian, Kafka broker jars in build/kafka-libs and
#     Spark's Kafka connector jars in build/spark-jars, both fetched with Maven from infra/{kafka,spark}/pom.xml
#   - the project's Spark classes (streaming/jvm) compiled into build/hft-spark/hft-spark.jar (a JDK's javac)
#   - Elasticsearch 9.5 (server + transport-netty4 from Maven, the project's launcher; a JDK 21+) in build/elasticsearch
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

# awk reads to the end (no `exit`): a writer cut off early dies of SIGPIPE, which pipefail turns into a failure.
java_major() { java -version 2>&1 | awk -F'"' '/version/ && !done {split($2, v, "."); print v[1]; done = 1}'; }

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

# 3. Virtualenv with the locked dependencies (LightGBM's wheel loads the system's OpenMP runtime, libgomp1).
if ! ldconfig -p 2>/dev/null | grep 'libgomp\.so\.1' >/dev/null; then  # no -q: an early exit would SIGPIPE ldconfig
  say "installing the OpenMP runtime LightGBM needs (libgomp1)"
  apt_install libgomp1
fi
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

# Install Debian packages without starting their services (policy-rc.d, the Debian way): the stack runs its own.
apt_install_no_start() {
  local policy=/usr/sbin/policy-rc.d
  if [ -e "$policy" ]; then
    apt_install "$@"
  else
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
    apt_install "$@"
    rm -f "$policy"; trap - EXIT
  fi
}

# 4. Redis 7 for the local stack. `hft stack up` runs its own instance under var/run, so the Debian
#    service must not start (it would take port 6379): services are blocked while the package installs
#    (policy-rc.d, the Debian way), then the unit is disabled and stopped should it have started anyway.
stop_debian_redis() {
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  else
    [ -x /etc/init.d/redis-server ] && { /etc/init.d/redis-server stop >/dev/null 2>&1 || true; }
    command -v update-rc.d >/dev/null && { update-rc.d redis-server disable >/dev/null 2>&1 || true; }
  fi
  if [ -f /run/redis/redis-server.pid ] && kill -0 "$(cat /run/redis/redis-server.pid)" 2>/dev/null; then
    kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
  fi
  return 0
}
if [ ! -x /usr/bin/redis-server ]; then
  say "installing redis-server (the Debian service is left disabled: hft stack up runs its own)"
  apt_install_no_start redis-server
  stop_debian_redis
  [ -x /usr/bin/redis-server ] || die "redis-server installed but /usr/bin/redis-server is missing"
fi

# 5. Jars from Maven Central: the Kafka broker (KRaft) and Spark's Kafka connector (spark-submit --jars).
#    A folder is fetched again only when its POM changed (the stamp holds the POM's hash).
if ! command -v mvn >/dev/null; then
  say "installing Maven"
  apt_install maven
fi
fetch_jars() {  # POM OUT_DIR WHAT
  local pom=$1 out=$2 what=$3 want log
  want="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [ -f "$out/.pom-sha256" ] && [ "$(cat "$out/.pom-sha256")" = "$want" ] && ls "$out"/*.jar >/dev/null 2>&1; then
    say "$what jars up to date ($out)"
    return 0
  fi
  say "fetching $what jars into $out (mvn)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  # Maven resolves a relative outputDirectory against the POM's folder: pass an absolute one.
  if ! log="$(mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$PWD/$out.tmp" 2>&1)"; then
    printf '%s\n' "$log" >&2
    rm -rf "$out.tmp"
    die "mvn could not fetch the $what jars of $pom (see above)"
  fi
  ls "$out.tmp"/*.jar >/dev/null 2>&1 || die "mvn fetched no jar for $pom"
  echo "$want" > "$out.tmp/.pom-sha256"
  rm -rf "$out" && mv "$out.tmp" "$out"
}
fetch_jars infra/kafka/pom.xml build/kafka-libs "Kafka broker"
fetch_jars infra/spark/pom.xml build/spark-jars "Spark Kafka connector"
fetch_jars infra/prometheus/jmx/pom.xml build/jmx-agent "Prometheus JMX exporter agent"

# 5b. The project's Spark classes (streaming/jvm: the streaming job's checkpoint manager), compiled against
#     pyspark's own jars into build/hft-spark/hft-spark.jar, again only when a source or pyspark changed.
command -v javac >/dev/null || { say "installing a Java 17 compiler"; apt_install openjdk-17-jdk-headless; }
pyspark_jars="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
jvm_want="$( (find streaming/jvm -name '*.java' | LC_ALL=C sort | xargs sha256sum; ls "$pyspark_jars") | sha256sum | cut -d' ' -f1)"
if [ -f build/hft-spark/.stamp ] && [ "$(cat build/hft-spark/.stamp)" = "$jvm_want" ] && [ -f build/hft-spark/hft-spark.jar ]; then
  say "project Spark classes up to date (build/hft-spark)"
else
  say "compiling the project's Spark classes (streaming/jvm -> build/hft-spark/hft-spark.jar)"
  rm -rf build/hft-spark.tmp && mkdir -p build/hft-spark.tmp/classes
  find streaming/jvm -name '*.java' | LC_ALL=C sort > build/hft-spark.tmp/sources
  javac --release 17 -Xlint:all,-path -Werror -cp "$pyspark_jars/*" -d build/hft-spark.tmp/classes @build/hft-spark.tmp/sources \
    || die "javac failed on streaming/jvm (see above)"
  jar cf build/hft-spark.tmp/hft-spark.jar -C build/hft-spark.tmp/classes . || die "jar failed"
  rm -rf build/hft-spark.tmp/classes build/hft-spark.tmp/sources
  echo "$jvm_want" > build/hft-spark.tmp/.stamp
  rm -rf build/hft-spark && mv build/hft-spark.tmp build/hft-spark
fi

# 6. The C++ executor: toolchain, GoogleTest and clang-format from Debian, then the pybind11 module (scikit-build-core)
#    into .venv, rebuilt only when a file under execution/ changed (the stamp holds their hash).
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
command -v clang-format >/dev/null || missing+=(clang-format)  # `make lint`: the C++ style check
if [ ${#missing[@]} -gt 0 ]; then
  say "installing the C++ toolchain: ${missing[*]}"
  apt_install "${missing[@]}"
fi
exec_stamp=$VENV/.hft-exec-stamp
exec_want="$(find execution -path execution/build -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
if [ -f "$exec_stamp" ] && [ "$(cat "$exec_stamp")" = "$exec_want" ] && "$VENV/bin/python" -c "import hft_exec" 2>/dev/null; then
  say "C++ executor module up to date"
else
  say "building the C++ executor module (pip install ./execution)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation ./execution \
    || die "building the C++ executor failed (pip install ./execution; see above)"
  echo "$exec_want" > "$exec_stamp"
fi

# 6b. A headless browser for the UI tests and the README's screenshots: Debian's chromium, driven by Playwright
#     (the Python package in the lock) through its executable path, so no browser download is needed.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing the headless browser for the UI tests: ${missing[*]}"
  apt_install "${missing[@]}"
fi

# 6c. PostgreSQL, the production backend of MLflow and Airflow (HFT_METADATA_DB=postgres): the stack initialises
#     and runs its own server (hft.stack.postgres), so the package's own cluster must not start.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing PostgreSQL (the production backend of MLflow and Airflow)"
  apt_install_no_start postgresql
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || die "postgresql installed but no initdb in /usr/lib/postgresql"
fi

# 6d. Prometheus 2.42 with promtool, and the exporters of Redis and the host (Debian): `hft stack up --services
#     monitoring` runs its own instances on 127.0.0.1, so the packages' services must not start.
missing=()
for pkg in prometheus prometheus-node-exporter prometheus-redis-exporter prometheus-alertmanager; do
  [ -x "/usr/bin/$pkg" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing the monitoring tools: ${missing[*]}"
  apt_install_no_start "${missing[@]}"
fi

# 6e. Elasticsearch 9.5 for logs and search (`hft stack up --services elasticsearch`): the server and its
#     transport-netty4 module from Maven Central (infra/elasticsearch/pom.xml), started by the project's own
#     launcher (infra/elasticsearch/launcher, compiled here) since the Elastic CLI is not published. Needs a
#     JDK 21+ (Temurin 25 where present) and Debian's libzstd (`best_compression`). Assembled as ES_HOME in
#     build/elasticsearch: lib/ (the server's jars, on the module path; lib/platform/linux-<arch>/libzstd.so),
#     modules/transport-netty4/ (the netty jars and the plugin descriptor unzipped from the module's jar),
#     plugins/ (empty), hft-es-launcher.jar and java-home (the JDK hft.stack runs it with); again only when the
#     POM, the launcher's sources, the JDK or libzstd changed (the stamp holds their hash).
jdk_major() {  # JAVA_HOME -> its major version (0 when unknown)
  local v
  v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null)"
  [ -n "$v" ] || v="$("$1/bin/java" -version 2>&1 | awk -F'"' '/version/ && !done {split($2, v, "."); print v[1]; done = 1}')"
  echo "${v:-0}"
}
find_jdk21() {  # the newest JDK >= 21 under /usr/lib/jvm (java and javac), Temurin 25 first
  local best="" best_major=0 d m
  for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*; do
    [ -x "$d/bin/java" ] && [ -x "$d/bin/javac" ] && [ -x "$d/bin/jar" ] || continue
    m="$(jdk_major "$d")"
    if [ "$m" -ge 21 ] 2>/dev/null && [ "$m" -gt "$best_major" ]; then best=$d; best_major=$m; fi
  done
  [ -n "$best" ] && readlink -f "$best"
}
es_jdk="$(find_jdk21 || true)"
if [ -z "$es_jdk" ]; then
  if apt-cache policy openjdk-21-jdk-headless 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
    say "installing a Java 21 JDK for Elasticsearch (openjdk-21-jdk-headless)"
    apt_install openjdk-21-jdk-headless
    es_jdk="$(find_jdk21 || true)"
  fi
  [ -n "$es_jdk" ] || die "Elasticsearch 9.5 needs a JDK 21+ in /usr/lib/jvm (e.g. Temurin 25 in /usr/lib/jvm/temurin-25-jdk-amd64, or openjdk-21-jdk-headless); none found and none installable with apt"
fi
libzstd() { ldconfig -p 2>/dev/null | awk '/libzstd\.so\.1 / && !done {print $NF; done = 1}'; }
if [ -z "$(libzstd)" ]; then
  say "installing libzstd1 (Elasticsearch's best_compression codec)"
  apt_install libzstd1
  [ -n "$(libzstd)" ] || die "libzstd1 installed but ldconfig does not find libzstd.so.1"
fi
es_zstd="$(libzstd)"  # the soname link: it follows library upgrades
case "$(uname -m)" in x86_64) es_platform=linux-x64 ;; aarch64|arm64) es_platform=linux-aarch64 ;; *) die "Elasticsearch: unsupported machine $(uname -m)" ;; esac
fetch_jars infra/elasticsearch/pom.xml build/elasticsearch-jars "Elasticsearch"
es_want="$( (sha256sum infra/elasticsearch/pom.xml; find infra/elasticsearch/launcher -name '*.java' | LC_ALL=C sort | xargs sha256sum;
             echo "$es_jdk $es_zstd $es_platform"; ls build/elasticsearch-jars) | sha256sum | cut -d' ' -f1)"
ES=build/elasticsearch
if [ -f "$ES/.stamp" ] && [ "$(cat "$ES/.stamp")" = "$es_want" ] && [ -f "$ES/hft-es-launcher.jar" ] \
   && [ -e "$ES/lib/platform/$es_platform/libzstd.so" ] && [ -f "$ES/modules/transport-netty4/plugin-descriptor.properties" ]; then
  say "Elasticsearch node up to date ($ES, JDK $es_jdk)"
else
  say "assembling Elasticsearch in $ES (JDK $es_jdk)"
  tmp=$ES.tmp
  rm -rf "$tmp" && mkdir -p "$tmp/lib/platform/$es_platform" "$tmp/modules/transport-netty4" "$tmp/plugins" "$tmp/launcher-classes"
  module=(build/elasticsearch-jars/transport-netty4-*.jar build/elasticsearch-jars/netty-*.jar build/elasticsearch-jars/elasticsearch-ssl-config-*.jar)
  for jar in "${module[@]}"; do
    [ -f "$jar" ] || die "$jar missing from build/elasticsearch-jars (infra/elasticsearch/pom.xml)"
    cp -l "$jar" "$tmp/modules/transport-netty4/" 2>/dev/null || cp "$jar" "$tmp/modules/transport-netty4/"
  done
  for jar in build/elasticsearch-jars/*.jar; do  # the server's jars: everything the module does not take
    [ -e "$tmp/modules/transport-netty4/$(basename "$jar")" ] && continue
    cp -l "$jar" "$tmp/lib/" 2>/dev/null || cp "$jar" "$tmp/lib/"
  done
  (cd "$tmp/modules/transport-netty4" && "$es_jdk/bin/jar" xf transport-netty4-*.jar META-INF/es-plugins/transport-netty4 \
    && mv META-INF/es-plugins/transport-netty4/* . && rm -rf META-INF) || die "cannot unpack the transport-netty4 descriptor"
  [ -f "$tmp/modules/transport-netty4/plugin-descriptor.properties" ] || die "transport-netty4 jar has no plugin-descriptor.properties"
  ln -s "$es_zstd" "$tmp/lib/platform/$es_platform/libzstd.so"
  find infra/elasticsearch/launcher -name '*.java' | LC_ALL=C sort > "$tmp/sources"
  "$es_jdk/bin/javac" --release 21 -Xlint:all,-path -Werror -cp "$tmp/lib/*" -d "$tmp/launcher-classes" @"$tmp/sources" \
    || die "javac failed on infra/elasticsearch/launcher (see above)"
  "$es_jdk/bin/jar" cf "$tmp/hft-es-launcher.jar" -C "$tmp/launcher-classes" . || die "jar failed (Elasticsearch launcher)"
  rm -rf "$tmp/launcher-classes" "$tmp/sources"
  echo "$es_jdk" > "$tmp/java-home"
  echo "$es_want" > "$tmp/.stamp"
  rm -rf "$ES" && mv "$tmp" "$ES"
fi

# 7. Sanity: the versions CI tested (pyspark and pyspark-client share one folder and must match).
"$VENV/bin/python" - <<'PY' || die "environment check failed (see above)"
import importlib.metadata as md
import pyspark
assert pyspark.__version__ == "4.2.0", f"pyspark {pyspark.__version__} != 4.2.0"
assert md.version("pyspark-client") == pyspark.__version__, "pyspark-client and pyspark versions differ"
import great_expectations, airflow, hft  # noqa: F401
import confluent_kafka, redis, hiredis, psycopg2, asyncpg, elasticsearch, bcrypt  # noqa: F401  (local stack clients: hft.stack)
import hft_exec  # noqa: F401  (the C++ executor)
PY
say "ready"
