# Sourced by the bench run scripts (bash). study NAME [ARGS...] runs bench study NAME of the checkout in the
# current folder with "$python": as a module where bench/ is a package; as a file, with bench/ on the path, in
# a worktree pinned before it was one (those scripts import `common`).
study() {
  local name="$1"
  shift
  if [ -f bench/__init__.py ]; then
    PYTHONPATH="$PWD/src" "$python" -m "bench.$name" "$@"
  else
    PYTHONPATH="$PWD/src:$PWD/bench" "$python" "bench/$name.py" "$@"
  fi
}
