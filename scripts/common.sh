# Shared by the scripts: sourced, not run.

# Installs Debian packages (for a command that is missing on a fresh machine).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Node and npm, for building the web UI.
ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
}

# Builds the web UI into ui/dist, which the server embeds (release) or reads (debug).
build_ui() {
  ensure_node
  npm --prefix ui ci --no-audit --no-fund --loglevel=error
  npm --prefix ui run --silent build
}
