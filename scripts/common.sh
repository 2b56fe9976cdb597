# Shared by the scripts: sourced, not run.

# Installs Debian packages (for a command that is missing on a fresh machine).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Node and npm, for building the web UI.
ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
}

# A free loopback port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The body at a URL, on stdout (Python's urllib: no curl needed).
http_get() {
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

# Waits up to 10 s for a cairn server to answer at a base URL.
wait_for_cairn() {
  for _ in $(seq 1 100); do http_get "$1/api/v1/info" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no cairn server answered at $1 within 10 s" >&2
  return 1
}

# Builds the web UI into ui/dist, which the server embeds (release) or reads (debug).
build_ui() {
  ensure_node
  npm --prefix ui ci --no-audit --no-fund --loglevel=error
  npm --prefix ui run --silent build
}

# Starts an S3 API on loopback (moto in server mode, from the venv) with the bucket the tests
# use, exports CAIRN_TEST_S3_ENDPOINT and CAIRN_TEST_S3_BUCKET, and stops it when the script ends.
start_s3() {
  local port
  port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  .venv/bin/python -m moto.server -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/cairn-moto-$port.log" 2>&1 &
  MOTO_PID=$!
  trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
  export CAIRN_TEST_S3_ENDPOINT="http://127.0.0.1:$port" CAIRN_TEST_S3_BUCKET=cairn-test
  .venv/bin/python - <<'PY'
import os, time, urllib.request, boto3
for _ in range(200):
    try:
        urllib.request.urlopen(os.environ["CAIRN_TEST_S3_ENDPOINT"] + "/", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
s3 = boto3.client("s3", endpoint_url=os.environ["CAIRN_TEST_S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
s3.create_bucket(Bucket=os.environ["CAIRN_TEST_S3_BUCKET"])
PY
  echo "S3 API (moto) at $CAIRN_TEST_S3_ENDPOINT, bucket $CAIRN_TEST_S3_BUCKET"
}

# The PostgreSQL server binaries: Debian's, installed with apt where they are missing.
pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    apt_install postgresql >/dev/null
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$dir"
}

# Starts a throw-away PostgreSQL cluster on loopback (initdb and pg_ctl as the postgres user,
# since postgres refuses to run as root), exports CAIRN_TEST_POSTGRES with a URL of a database
# the tests may use, and stops it when the script ends. Chains the EXIT trap of start_s3.
start_postgres() {
  local bin dir port as
  bin=$(pg_bin)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-pg.XXXXXX")
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as=""
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    as="runuser -u postgres --"
  fi
  $as "$bin/initdb" -D "$dir/data" -U cairn --auth=trust -E UTF8 >/dev/null
  $as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null
  PG_STOP="$as $bin/pg_ctl -D $dir/data -m immediate stop"
  trap 'kill ${MOTO_PID:-} 2>/dev/null || true; $PG_STOP >/dev/null 2>&1 || true' EXIT
  $as "$bin/createdb" -h 127.0.0.1 -p "$port" -U cairn cairn_test
  $as "$bin/createdb" -h 127.0.0.1 -p "$port" -U cairn cairn_ui
  # Rust tests make a schema of their own in cairn_test; the browser tests use cairn_ui.
  export CAIRN_TEST_POSTGRES="postgres://cairn@127.0.0.1:$port/cairn_test"
  export CAIRN_TEST_POSTGRES_UI="postgres://cairn@127.0.0.1:$port/cairn_ui"
  echo "PostgreSQL at $CAIRN_TEST_POSTGRES"
}
