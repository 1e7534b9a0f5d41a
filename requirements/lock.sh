#!/usr/bin/env bash
# Regenerates requirements/lock.txt: every distribution the package and all its extras resolve to, pinned,
# for CPython 3.11 on Linux x86_64 (CI, the Dockerfile's image, Beam's SDK containers). CI tests the lock;
# the README's commands and the Dockerfile install with `-c requirements/lock.txt`. After regenerating, run
# the suite on it (.ci/run does), then commit the lock with the bounds it was resolved under.
#   bash requirements/lock.sh            resolve anew within pyproject.toml's bounds (the newest allowed)
#   bash requirements/lock.sh --check    exit 1 if lock.txt does not match what pyproject.toml allows
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
uv() {
  if command -v uv >/dev/null && [ "$(command uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then command uv "$@"
  else python3 -m pip install --quiet "uv==$UV_VERSION" && python3 -m uv "$@"; fi
}
args=(pip compile pyproject.toml -c requirements/pip-compat.txt --all-extras --python-version 3.11 --python-platform x86_64-manylinux_2_28
  --no-header --quiet --custom-compile-command "bash requirements/lock.sh")
if [ "${1:-}" = "--check" ]; then
  # --upgrade off: a lock that still satisfies the bounds is kept as it is; any change means a stale lock.
  tmp=$(mktemp)
  cp requirements/lock.txt "$tmp"
  uv "${args[@]}" -o "$tmp"
  if ! diff -q requirements/lock.txt "$tmp" >/dev/null; then
    diff requirements/lock.txt "$tmp" | head -20 >&2
    rm -f "$tmp"
    echo "requirements/lock.txt does not match pyproject.toml: run bash requirements/lock.sh" >&2
    exit 1
  fi
  rm -f "$tmp"
  exit 0
fi
uv "${args[@]}" --upgrade -o requirements/lock.txt
echo "wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) distributions)"
