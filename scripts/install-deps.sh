#!/usr/bin/env bash
# Installs what dsv4 needs to build and test on Debian/Ubuntu (run as root or with sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# fortunes: the English text of the training data (dsv4 data build reads /usr/share/games/fortunes).
# libicu-dev: Unicode normalisation (NFKC/NFD) for the V4.1 Engram vocabulary.
PKGS="build-essential cmake pkg-config libjansson-dev libmicrohttpd-dev libpcre2-dev libopenblas-dev fortunes curl libicu-dev"
missing=""
# The NEON kernels are cross-compiled and run under qemu (tests/neon.test.sh).
PKGS="$PKGS gcc-aarch64-linux-gnu qemu-user"
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# The tokenizer oracle test and benchmark use the Hugging Face `tokenizers` library from npm;
# the server tests use the official `openai` and `@anthropic-ai/sdk` clients (tests/js).
if ! command -v npm >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
(cd "$(dirname "$0")/../tests/js" && npm ci --no-audit --no-fund --loglevel=error)
