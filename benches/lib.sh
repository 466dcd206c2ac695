# Shared by the benchmark scripts (sourced, not run): a work directory
# removed on exit, a local docker-registry, and timing helpers.

# needs TOOL...: fails with the script's name unless every tool is present.
needs() {
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$0 needs $tool" >&2; exit 1; }
	done
}

# Sets $work (a temporary directory) and removes it, and stops the
# registry if one was started, on exit.
work=$(mktemp -d)
reg_pid=
# Never fails: under set -e a failing command here (wait reports the
# registry's SIGTERM as 143) would become the script's exit status after
# it measured what it set out to.
cleanup() {
	if [ -n "$reg_pid" ]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
	rm -rf "$work" || true
}
trap cleanup EXIT

# start_registry: Debian's docker-registry on a free 127.0.0.1 port,
# storage under $work; sets $REG (127.0.0.1:PORT). No access log unless
# REG_ACCESS_LOG=1 (then requests are counted with `requests`).
start_registry() {
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	REG=127.0.0.1:$port
	local disabled=true
	[ "${REG_ACCESS_LOG:-}" = 1 ] && disabled=false
	cat >"$work/config.yml" <<CONF
version: 0.1
log:
  level: error
  accesslog:
    disabled: $disabled
storage:
  filesystem:
    rootdirectory: $work/data
http:
  addr: $REG
CONF
	docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
	reg_pid=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "docker-registry did not start:" >&2
	cat "$work/registry.log" >&2
	exit 1
}

# requests [PATTERN]: requests in the registry's access log so far
# (matching PATTERN, e.g. 'GET /v2/.*/blobs/').
requests() { grep -c "\"${1:-[A-Z]* /v2/}" "$work/registry.log" || true; }

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v n="$1" 'BEGIN {printf "%.1f", n/1e6}'; }
