#!/usr/bin/env bash
# Install harmony-bench and its pinned, tested stack into a virtual environment.
#
# Idempotent: a second run checks a stamp and returns in about a second.  The
# slow part, building mmcv 2.1.0 with compiled ops (no wheels exist on the
# package index), happens once per machine: the built wheel is kept in
# $HARMONY_BENCH_WHEEL_CACHE keyed by mmcv, torch, python and CPU/CUDA variant,
# so a fresh clone on the same machine installs it in seconds.
#
# Environment knobs:
#   HARMONY_BENCH_VENV        venv path (default: <repo>/.venv)
#   HARMONY_BENCH_EXTRAS      extras to install (default: dense,pretrain,dev)
#   HARMONY_BENCH_MMCV_CUDA   1/0 forces building mmcv with/without CUDA ops
#                             (default: CUDA ops when nvidia-smi sees a GPU and
#                             nvcc is on PATH)
#   HARMONY_BENCH_WHEEL_CACHE where built mmcv wheels are kept
#   PYTHON                    interpreter for the venv (default: python3.11)
#   HARMONY_BENCH_BROWSER     0 skips the optional chromium install (browser test)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${HARMONY_BENCH_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
EXTRAS=${HARMONY_BENCH_EXTRAS:-dense,pretrain,dev}
WHEEL_CACHE=${HARMONY_BENCH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harmony-bench/wheels}
CONSTRAINTS=$ROOT/constraints.txt
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION=2.1.0
BUILD_TOOLS=("setuptools>=77.0.3,<81" wheel ninja)
START=$(date +%s)

log() { printf '[install +%ss] %s\n' "$(($(date +%s) - START))" "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

stamp_value() {
  cat "$ROOT/pyproject.toml" "$CONSTRAINTS" "$ROOT/scripts/install.sh" | sha256sum | cut -c1-16
  echo "extras=$EXTRAS cuda=$(want_cuda_ops)"
}

want_cuda_ops() {
  if [[ -n "${HARMONY_BENCH_MMCV_CUDA:-}" ]]; then echo "$HARMONY_BENCH_MMCV_CUDA"; return; fi
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
     && command -v nvcc >/dev/null 2>&1; then echo 1; else echo 0; fi
}

make_venv() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found; set PYTHON=/path/to/python3.11"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
}

install_torch_and_build_tools() {
  log "torch, torchvision and build tools"
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q -c "$CONSTRAINTS" $TORCH_SPEC "${BUILD_TOOLS[@]}"
}

mmcv_is_installed() {
  local cuda=$1
  "$VENV/bin/python" - "$MMCV_VERSION" "$cuda" <<'PY' 2>/dev/null
import sys
import mmcv
from mmcv.ops import nms  # noqa: F401  (fails when the compiled ops are missing)
from mmcv.ops import get_compiling_cuda_version
has_cuda = get_compiling_cuda_version() not in ("", "not available")
sys.exit(0 if mmcv.__version__ == sys.argv[1] and has_cuda == (sys.argv[2] == "1") else 1)
PY
}

build_mmcv_wheel() {
  local cuda=$1 dir=$2
  log "building mmcv $MMCV_VERSION with compiled ops (cuda=$cuda): ~10-15 min on 2 cores, once per machine"
  "${PIP[@]}" install -q -c "$CONSTRAINTS" mmengine
  local nvcc_env=()
  if [[ "$cuda" == "1" ]]; then
    nvcc_env=(CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}")
  fi
  env "${nvcc_env[@]}" CXX="$ROOT/scripts/cxx20" MMCV_WITH_OPS=1 FORCE_CUDA="$cuda" \
    MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "${PIP[@]}" wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$dir" "mmcv==$MMCV_VERSION"
}

install_mmcv() {
  local cuda
  cuda=$(want_cuda_ops)
  if mmcv_is_installed "$cuda"; then log "mmcv $MMCV_VERSION with ops already installed"; return; fi
  local tag
  tag=$("$VENV/bin/python" -c 'import sys, torch; print(f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__.split(chr(43))[0]}")')
  local variant=cpu
  [[ "$cuda" == "1" ]] && variant=cuda$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda)')
  local dir="$WHEEL_CACHE/mmcv-$MMCV_VERSION-$tag-$variant"
  mkdir -p "$dir"
  if ! ls "$dir"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    build_mmcv_wheel "$cuda" "$dir.partial" || die "mmcv build failed; see the log above"
    mv "$dir.partial"/mmcv-*.whl "$dir"/ && rmdir "$dir.partial"
  else
    log "reusing built wheel from $dir"
  fi
  # With its dependencies (mmengine, opencv, addict, yapf): a fresh venv that reuses a cached wheel has none.
  "${PIP[@]}" install -q -c "$CONSTRAINTS" --force-reinstall "$dir"/mmcv-"$MMCV_VERSION"-*.whl
  mmcv_is_installed "$cuda" || die "mmcv installed but its compiled ops do not import"
}

install_project() {
  log "harmony-bench[$EXTRAS]"
  "${PIP[@]}" install -q -c "$CONSTRAINTS" -e "$ROOT[$EXTRAS]"
}

verify() {
  "$VENV/bin/python" -c "import harmony_bench; print('harmony-bench', harmony_bench.__version__, 'installed')"
  if [[ ",$EXTRAS," == *",dense,"* ]]; then
    "$VENV/bin/python" -c "import mmcv.ops, mmdet.models, mmseg.models; print('OpenMMLab stack imports')"
  fi
}

# Optional: a headless browser for the leaderboard page's test (without one that test is skipped, with
# the reason).  Debian's chromium through apt-get, as root or with passwordless sudo; never fails the install.
# HARMONY_BENCH_BROWSER=0 skips it.
has_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}

install_browser() {
  if [[ "${HARMONY_BENCH_BROWSER:-1}" == "0" ]] || has_browser; then return; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get: skipping the optional chromium (the leaderboard browser test will be skipped)"; return
  fi
  local sudo=()
  if [[ "$(id -u)" != "0" ]]; then
    if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      log "not root and no passwordless sudo: skipping the optional chromium"; return
    fi
  fi
  log "installing Debian's chromium (optional, for the leaderboard browser test)"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
  if ! "${apt[@]}" install -y -q --no-install-recommends chromium >/dev/null 2>&1; then
    "${apt[@]}" update -q >/dev/null 2>&1 || true
    "${apt[@]}" install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
      || log "could not install chromium (optional): the leaderboard browser test will be skipped"
  fi
}

main() {
  make_venv
  local stamp_file="$VENV/.harmony-bench-install-stamp"
  if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$(stamp_value)" ]] \
     && "$VENV/bin/python" -c "import harmony_bench" 2>/dev/null; then
    log "up to date ($VENV)"; return
  fi
  install_torch_and_build_tools
  if [[ ",$EXTRAS," == *",dense,"* ]]; then install_mmcv; fi
  install_project
  verify
  install_browser
  stamp_value >"$stamp_file"
  log "done"
}

main "$@"
