# Sourced by the scripts in this folder: create or reuse a virtual environment.
# usage: ensure_venv DIR "PIP ARGS..."  — reinstalls only when setup.cfg or the arguments change.
ensure_venv() {
  local dir=$1 args=$2
  local python=${PYTHON:-python3}
  local stamp="$dir/.installed"
  local want
  want="$(cat setup.cfg; echo "$args")"
  if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$dir"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$dir/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
    # shellcheck disable=SC2086
    "$dir/bin/python" -m pip install --quiet $args 2>&1 | grep -v "is ignored" || true
    "$dir/bin/python" -c "import starlette_session" # fail here, not later, if the install failed
    printf '%s' "$want" > "$stamp"
  fi
}
