#!/usr/bin/env bash
# Render a run's index.html in headless Chromium to a PNG (for the README screenshot).
# Usage: scripts/screenshot.sh RUN_DIR [OUT.png]   (needs Debian's chromium: apt-get install chromium)
set -euo pipefail
run_dir=$(cd "$1" && pwd)
out=${2:-$run_dir/screenshot.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size=1200,2000 \
    --screenshot="$out" "file://$run_dir/index.html" 2>/dev/null
echo "wrote $out"
