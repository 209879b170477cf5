#!/usr/bin/env bash
# Installs the tools Rotor's stack and tests need into a cache outside the clone:
#   - the Temporal CLI (dev server + UI), built from its Go module;
#   - HashiCorp Vault, built from the wrapper module in tools/vault;
#   - moto, the AWS IAM and STS emulator, in its own Python virtual environment;
#   - the npm dependencies, when node_modules is missing or older than package-lock.json.
# Each tool goes into one folder per pinned version, so every clone on the machine reuses it.
# Go's module and build caches stay in their default places, so a rebuild after a version
# bump is incremental. Prints the tool folder as its last line.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$repo_dir/tools/versions.env"
# The Temporal CLI v1.5.1 declares go 1.25 in its go.mod.
MIN_GO_MINOR=25
tools_dir=${ROTOR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rotor/tools}
mkdir -p "$tools_dir"

current_step=""
step_log=""

step() {
  current_step=$1
  printf '[setup] %s\n' "$1"
}

on_error() {
  local status=$?
  printf '[setup] FAILED while %s (exit %s).\n' "$current_step" "$status" >&2
  if [[ -n $step_log && -f $step_log ]]; then
    printf '[setup] last lines of %s:\n' "$step_log" >&2
    tail -n 25 "$step_log" >&2
  fi
  printf '[setup] Fix the cause above and run the command again; finished tools are kept.\n' >&2
  exit "$status"
}
trap on_error ERR

# Runs a long command with its output in a log file, printing elapsed time every 30 seconds
# so a first build on a small machine does not look like a hang.
run_logged() {
  step_log=$1
  shift
  local started=$SECONDS
  "$@" >"$step_log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    local elapsed=$((SECONDS - started))
    if ((elapsed > 0 && elapsed % 30 < 5)); then
      printf '[setup]   still working: %s min %s s\n' $((elapsed / 60)) $((elapsed % 60))
    fi
  done
  wait "$pid"
  printf '[setup]   done in %s s\n' $((SECONDS - started))
}

require_go() {
  step "checking the Go toolchain"
  if ! command -v go >/dev/null 2>&1; then
    printf '[setup] Go is not installed. Install Go 1.%s or newer, then run this again.\n' "$MIN_GO_MINOR" >&2
    return 1
  fi
  local minor
  minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if ((minor < MIN_GO_MINOR)); then
    printf '[setup] Go %s is too old: the Temporal CLI %s needs Go 1.%s or newer.\n' \
      "$(go env GOVERSION)" "$TEMPORAL_CLI_VERSION" "$MIN_GO_MINOR" >&2
    return 1
  fi
}

install_temporal() {
  local dir=$tools_dir/temporal-cli-$TEMPORAL_CLI_VERSION
  if [[ -x $dir/bin/temporal ]]; then
    printf '[setup] Temporal CLI %s: already installed\n' "$TEMPORAL_CLI_VERSION"
    return
  fi
  require_go
  step "building the Temporal CLI $TEMPORAL_CLI_VERSION (about 4 minutes the first time on 2 cores)"
  mkdir -p "$dir"
  run_logged "$dir/build.log" env GOBIN="$dir/.partial" \
    go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"
  mv "$dir/.partial" "$dir/bin"
}

install_vault() {
  local dir=$tools_dir/vault-$VAULT_VERSION
  if [[ -x $dir/bin/vault ]] && cmp -s "$dir/go.sum" "$repo_dir/tools/vault/go.sum"; then
    printf '[setup] Vault %s: already installed\n' "$VAULT_VERSION"
    return
  fi
  require_go
  step "building HashiCorp Vault $VAULT_VERSION (about 12 minutes the first time on 2 cores)"
  mkdir -p "$dir/bin"
  run_logged "$dir/build.log" go build -C "$repo_dir/tools/vault" -trimpath -o "$dir/bin/vault.partial" .
  mv "$dir/bin/vault.partial" "$dir/bin/vault"
  cp "$repo_dir/tools/vault/go.sum" "$dir/go.sum"
}

install_moto() {
  local dir=$tools_dir/moto-$MOTO_VERSION
  if [[ -x $dir/venv/bin/moto_server ]]; then
    printf '[setup] moto %s: already installed\n' "$MOTO_VERSION"
    return
  fi
  step "installing moto $MOTO_VERSION into a Python virtual environment"
  if ! command -v python3 >/dev/null 2>&1; then
    printf '[setup] python3 is not installed. Install Python 3.9 or newer, then run this again.\n' >&2
    return 1
  fi
  rm -rf "$dir/venv"
  mkdir -p "$dir"
  run_logged "$dir/install.log" bash -c \
    "python3 -m venv '$dir/venv' && '$dir/venv/bin/pip' install --disable-pip-version-check 'moto[server]==$MOTO_VERSION'"
}

install_node_modules() {
  local stamp=$repo_dir/node_modules/.package-lock.json
  if [[ -f $stamp && ! $repo_dir/package-lock.json -nt $stamp ]]; then
    printf '[setup] npm dependencies: up to date\n'
    return
  fi
  step "installing npm dependencies (npm ci)"
  run_logged "$tools_dir/npm-ci.log" npm ci --prefix "$repo_dir" --no-audit --no-fund
}

# Two clones setting up at once would build into the same folders.
exec 9>"$tools_dir/.setup.lock"
flock 9

install_node_modules
install_temporal
install_vault
install_moto

printf '%s\n' "$tools_dir"
