#!/usr/bin/env bash
# Render cloud-init user-data (#cloud-config, on stdout) that makes a fresh cloud VM into one learner's lab:
# a VM per learner, for classes that want root for everyone (docs/vm-per-learner.md).
#
#   vagrant/cloud-init-user-data.sh --git https://git.example.org/minicontainer.git --ref main \
#       --ssh-key ~/.ssh/id_ed25519.pub > user-data
#   vagrant/cloud-init-user-data.sh --tarball https://example.org/minicontainer.tar.gz \
#       --password-file learner07.txt --ca-cert proxy.crt > learner07.yaml
#
# The VM runs vagrant/provision.sh, the one provisioning script (embedded here, gzip+base64, from this
# checkout: never a copy kept by hand), on a checkout it fetches on its first boot into
# /opt/minicontainer/checkout: the checkout (~500 KB gzipped) does not fit in EC2's 16 KB of user data.
# vagrant/cloud-first-boot.sh (embedded too) fetches it, runs provision.sh for the learner's account and
# prints "minicontainer-lab: READY" (or FAILED) on the console.
#
# For any cloud that passes user data to cloud-init in its images (EC2, Azure, OpenStack, Hetzner, DigitalOcean,
# Proxmox, ...; GCE with an image that has cloud-init, such as Ubuntu's), and for libvirt/qemu with a NoCloud
# seed (vagrant/nocloud-check.sh boots one that way; no real cloud has run it yet). The image must be one
# provision.sh supports: Debian 12 or 13, Ubuntu 24.04. Only standard cloud-init modules and keys are used:
# users (plus ssh_pwauth, read by set_passwords), ca_certs (trusted), write_files (encoding gz+b64 and b64),
# runcmd, update_etc_hosts (manage_etc_hosts), final_message. Nothing phones home.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROVISION=$HERE/provision.sh
FIRST_BOOT=$HERE/cloud-first-boot.sh
GUEST_DIR=/opt/minicontainer/cloud-init        # where the VM keeps what this user-data writes
EC2_LIMIT=16384                                 # bytes of user data EC2 takes (the smallest common limit)

usage() {
  cat <<'EOF'
usage: vagrant/cloud-init-user-data.sh SOURCE LOGIN [options] > user-data

Prints cloud-init user-data (#cloud-config) that makes a fresh Debian 12/13 or Ubuntu 24.04 cloud VM into
one learner's minicontainer lab: provision.sh (embedded) runs on the checkout the VM fetches on first boot.

SOURCE, one of (where the VM fetches the checkout from, into /opt/minicontainer/checkout):
  --git URL             a git repository the VM can reach (https://...)
  --ref REF             its branch, tag or commit (default: the repository's HEAD)
  --tarball URL         a .tar.gz of the checkout (http:// or https://; `git archive`, or a forge's archive link)

LOGIN, at least one of (the learner's account, with sudo: the VM is theirs):
  --ssh-key KEY|FILE    an ssh public key (its text, or a .pub file; repeatable)
  --password-file FILE  a password, read from FILE's first line ("-": stdin), put in the user-data hashed
                        (SHA-512 crypt); turns on ssh password logins
  --password-hash HASH  a password as a crypt(3) hash (openssl passwd -6); turns on ssh password logins

options:
  --user NAME           the learner's account name (default: learner)
  --ca-cert FILE        a CA certificate (PEM) the VM must trust, for networks that inspect TLS (repeatable)
  --extras LIST         pip extras for provision.sh (MINICONTAINER_EXTRAS; default: lab)
  -h, --help            this text

JupyterLab listens on the VM's 127.0.0.1:8888: the learner reaches it through ssh
(ssh -L 8888:127.0.0.1:8888 learner@VM) with the token in /etc/minicontainer/token.
EOF
}

die() { printf 'cloud-init-user-data: %s\n' "$*" >&2; exit 2; }

# --- input -----------------------------------------------------------------------------------------

GIT_URL="" GIT_REF="" TARBALL_URL="" LEARNER=learner EXTRAS=lab PASSWORD_HASH=""
SSH_KEYS=() CA_FILES=()

need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }

# A value that goes into a URL or ref: one line, no spaces or control characters.
plain_token() {
  case "$2" in ''|*[[:space:]]*|*[[:cntrl:]]*) die "$1: '$2' is empty or has spaces or control characters" ;; esac
}

add_ssh_keys() {  # add_ssh_keys KEY|FILE
  local line lines=()
  if [ -f "$1" ]; then
    mapfile -t lines < <(grep -v '^[[:space:]]*\(#\|$\)' "$1")
    [ ${#lines[@]} -gt 0 ] || die "--ssh-key: $1 holds no key"
  else
    lines=("$1")
  fi
  for line in "${lines[@]}"; do
    case "$line" in *[[:cntrl:]]*) die "--ssh-key: a key has control characters" ;; esac
    if ! [[ $line =~ ^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\ [A-Za-z0-9+/]+=*(\ .*)?$ ]]; then
      die "--ssh-key: '${line:0:40}...' is neither an ssh public key (ssh-ed25519 AAAA...) nor a file"
    fi
    SSH_KEYS+=("$line")
  done
}

read_password_file() {  # read_password_file FILE|-
  local password
  command -v openssl >/dev/null || die "--password-file needs openssl (to hash it); or give --password-hash"
  if [ "$1" = - ]; then IFS= read -r password || true
  else [ -r "$1" ] || die "--password-file: cannot read $1"; IFS= read -r password < "$1" || true
  fi
  [ -n "$password" ] || die "--password-file: the first line of $1 is empty"
  PASSWORD_HASH=$(printf '%s\n' "$password" | openssl passwd -6 -stdin)
}

check_password_hash() {
  [[ $1 =~ ^\$[0-9a-z]+\$[./A-Za-z0-9\$=,]+$ ]] || die "--password-hash: '$1' is not a crypt(3) hash (openssl passwd -6 makes one)"
}

add_ca_cert() {
  [ -r "$1" ] || die "--ca-cert: cannot read $1"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$1" || die "--ca-cert: $1 is not a PEM certificate (no BEGIN CERTIFICATE)"
  if command -v openssl >/dev/null && ! openssl x509 -in "$1" -noout 2>/dev/null; then
    die "--ca-cert: openssl cannot read $1 as a certificate"
  fi
  CA_FILES+=("$1")
}

parse_args() {
  [ $# -gt 0 ] || { usage >&2; exit 2; }
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --git) need_value "$1" $#; plain_token "$1" "$2"; GIT_URL=$2; shift ;;
      --ref) need_value "$1" $#; plain_token "$1" "$2"; GIT_REF=$2; shift ;;
      --tarball) need_value "$1" $#; plain_token "$1" "$2"; TARBALL_URL=$2; shift ;;
      --user) need_value "$1" $#; LEARNER=$2; shift ;;
      --ssh-key) need_value "$1" $#; add_ssh_keys "$2"; shift ;;
      --password-file) need_value "$1" $#; read_password_file "$2"; shift ;;
      --password-hash) need_value "$1" $#; check_password_hash "$2"; PASSWORD_HASH=$2; shift ;;
      --ca-cert) need_value "$1" $#; add_ca_cert "$2"; shift ;;
      --extras) need_value "$1" $#; EXTRAS=$2; shift ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
  done
  if [ -n "$GIT_URL" ] && [ -n "$TARBALL_URL" ]; then die "give --git or --tarball, not both"; fi
  if [ -z "$GIT_URL" ] && [ -z "$TARBALL_URL" ]; then
    die "where does the VM get the checkout? give --git URL [--ref REF] or --tarball URL"
  fi
  if [ -n "$GIT_REF" ] && [ -z "$GIT_URL" ]; then die "--ref goes with --git"; fi
  case "$GIT_REF" in -*) die "--ref: '$GIT_REF' is not a branch, tag or commit" ;; esac
  case "$TARBALL_URL" in ''|http://*|https://*) ;; *) die "--tarball: '$TARBALL_URL' is not an http(s) URL" ;; esac
  [[ $LEARNER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "--user: '$LEARNER' is not a user name (lower case letters, digits, _ and -)"
  case "$LEARNER" in root|daemon|bin|sys|nobody) die "--user: '$LEARNER' is a system account" ;; esac
  [[ $EXTRAS =~ ^[a-z0-9_,-]+$ ]] || die "--extras: '$EXTRAS' is not a list of pip extras (lab,notebooks)"
  if [ ${#SSH_KEYS[@]} = 0 ] && [ -z "$PASSWORD_HASH" ]; then
    die "the learner could not log in: give --ssh-key, --password-file or --password-hash"
  fi
  if [ ! -r "$PROVISION" ] || [ ! -r "$FIRST_BOOT" ]; then
    die "run it from the checkout: $PROVISION or $FIRST_BOOT is missing"
  fi
}

# --- output ----------------------------------------------------------------------------------------

yaml_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }  # a YAML single-quoted scalar

# Where this was rendered from, for whoever reads the user-data on a VM.
source_commit() {
  local commit
  commit=$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null) || { echo "a checkout outside git"; return; }
  if [ -n "$(git -C "$HERE/.." status --porcelain -- vagrant/provision.sh vagrant/cloud-first-boot.sh 2>/dev/null)" ]; then
    echo "commit $commit, with local changes to the embedded scripts"
  else
    echo "commit $commit"
  fi
}

render_header() {
  echo '#cloud-config'
  echo "# minicontainer lab, one learner's VM: rendered by vagrant/cloud-init-user-data.sh ($(source_commit))."
  echo "# On first boot: fetch the checkout, run the embedded provision.sh for '$LEARNER', then print"
  echo "# \"minicontainer-lab: READY\" on the console. Log: /var/log/cloud-init-output.log."
}

render_users() {
  local key
  echo 'users:'
  echo "  - default            # the image's own admin account, with the cloud's key pair"
  echo "  - name: $LEARNER"
  echo '    gecos: minicontainer lab learner'
  echo '    shell: /bin/bash'
  echo "    sudo: 'ALL=(ALL) NOPASSWD:ALL'"
  if [ -n "$PASSWORD_HASH" ]; then
    echo '    lock_passwd: false'
    echo "    hashed_passwd: $(yaml_quote "$PASSWORD_HASH")"
  fi
  if [ ${#SSH_KEYS[@]} -gt 0 ]; then
    echo '    ssh_authorized_keys:'
    for key in "${SSH_KEYS[@]}"; do echo "      - $(yaml_quote "$key")"; done
  fi
  if [ -n "$PASSWORD_HASH" ]; then echo 'ssh_pwauth: true'; fi
}

render_ca_certs() {
  local f
  [ ${#CA_FILES[@]} -gt 0 ] || return 0
  echo 'ca_certs:'
  echo '  trusted:'
  for f in "${CA_FILES[@]}"; do
    echo '    - |'
    tr -d '\r' < "$f" | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' | sed 's/^/      /'
  done
}

write_file_entry() {  # write_file_entry PATH MODE ENCODING CONTENT
  echo "  - path: $1"
  echo "    permissions: '$2'"
  echo "    encoding: $3"
  echo "    content: $4"
}

# What runs in the VM is the one provision.sh, encoded on the fly (gzip -n: the same bytes every time).
gz_b64() { gzip -9 -n -c "$1" | base64 -w0; }

settings() {
  printf '# Written by vagrant/cloud-init-user-data.sh; read by cloud-first-boot.sh.\n'
  printf 'SOURCE_GIT=%q\nSOURCE_REF=%q\nSOURCE_TARBALL=%q\n' "$GIT_URL" "${GIT_REF:-HEAD}" "$TARBALL_URL"
  printf 'MINICONTAINER_USER=%q\nMINICONTAINER_EXTRAS=%q\n' "$LEARNER" "$EXTRAS"
  printf 'PROVISION_SHA256=%q\n' "$(sha256sum "$PROVISION" | cut -d' ' -f1)"
}

render_write_files() {
  echo 'write_files:'
  write_file_entry "$GUEST_DIR/provision.sh" 0755 gz+b64 "$(gz_b64 "$PROVISION")"
  write_file_entry "$GUEST_DIR/first-boot.sh" 0755 gz+b64 "$(gz_b64 "$FIRST_BOOT")"
  write_file_entry "$GUEST_DIR/settings.env" 0600 b64 "$(settings | base64 -w0)"
}

render_runcmd() {
  echo 'runcmd:'
  echo "  - [$GUEST_DIR/first-boot.sh, $GUEST_DIR/settings.env]"
}

# The VM's name in /etc/hosts: sudo, which the learner runs a lot, complains on images that lack it.
render_etc_hosts() {
  echo 'manage_etc_hosts: localhost'
}

render_final_message() {
  # shellcheck disable=SC2016  # $UPTIME is cloud-init's, not the shell's
  echo 'final_message: "minicontainer: cloud-init finished after $UPTIME s"'
}

render() {
  render_header
  render_users
  render_ca_certs
  render_write_files
  render_runcmd
  render_etc_hosts
  render_final_message
}

main() {
  local out size
  parse_args "$@"
  out=$(render)
  printf '%s\n' "$out"
  size=$(printf '%s\n' "$out" | wc -c)
  if [ "$size" -gt "$EC2_LIMIT" ]; then
    echo "cloud-init-user-data: note: $size bytes, more than the $EC2_LIMIT EC2 takes as user data (most clouds take more)" >&2
  fi
}

main "$@"
