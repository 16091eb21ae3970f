#!/bin/sh
# Pre-workshop check, for learners at home (Linux or macOS; Windows: precheck.ps1):
#   sh vagrant/precheck.sh
# Says whether this machine can run the lab VM: Vagrant and its version, a provider, CPU
# virtualization, free RAM and disk, and port 8888. Exit status 0 = ready, 1 = something to fix.
# It changes nothing on the machine.

PORT=${MINICONTAINER_PORT:-8888}
NEED_RAM_MB=3072      # the VM's 2 GiB plus room for the host
NEED_DISK_MB=10240    # the box (~1 GiB) and the VM's disk as the lab fills it (~5 GiB), with margin
problems=0

ok()   { printf '  ok    %s\n' "$*"; }
bad()  { printf '  FIX   %s\n' "$*"; problems=$((problems + 1)); }
note() { printf '  note  %s\n' "$*"; }
# version_ge A B: A >= B for dotted versions
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)" = "$2" ]; }

os=$(uname -s) arch=$(uname -m)
echo "minicontainer lab pre-check on $os $arch"

# Vagrant: bento's current boxes are published with architecture metadata, which Vagrant reads from 2.4 on.
if command -v vagrant >/dev/null 2>&1; then
  v=$(vagrant --version 2>/dev/null | awk '{print $2}')
  if version_ge "$v" 2.4.0; then ok "vagrant $v"; else bad "vagrant $v is too old: install 2.4 or newer (https://developer.hashicorp.com/vagrant/install)"; fi
  plugins=$(vagrant plugin list 2>/dev/null)
else
  bad "vagrant is not installed: https://developer.hashicorp.com/vagrant/install"
  plugins=""
fi

# Providers: at least one must be usable on this architecture.
providers=""
if command -v VBoxManage >/dev/null 2>&1; then
  vb=$(VBoxManage --version 2>/dev/null | sed 's/[^0-9.].*//')
  case $arch in
    arm64|aarch64)
      if version_ge "$vb" 7.1.0; then providers="$providers virtualbox($vb)"
      else note "VirtualBox $vb: arm64 hosts need 7.1 or newer"; fi ;;
    *) providers="$providers virtualbox($vb)" ;;
  esac
fi
if command -v prlctl >/dev/null 2>&1; then
  if echo "$plugins" | grep -q vagrant-parallels; then providers="$providers parallels"
  else note "Parallels found: also run 'vagrant plugin install vagrant-parallels'"; fi
fi
if command -v vmrun >/dev/null 2>&1 || [ -d "/Applications/VMware Fusion.app" ]; then
  if echo "$plugins" | grep -q vagrant-vmware-desktop; then providers="$providers vmware_desktop"
  else note "VMware found: also install the Vagrant VMware Utility and 'vagrant plugin install vagrant-vmware-desktop'"; fi
fi
if command -v virsh >/dev/null 2>&1; then
  if echo "$plugins" | grep -q vagrant-libvirt; then providers="$providers libvirt"
  else note "libvirt found: also install vagrant-libvirt (Debian/Ubuntu: apt install vagrant-libvirt)"; fi
fi
if [ -n "$providers" ]; then ok "provider(s):$providers"
else bad "no usable provider: install VirtualBox (7.1+ on Apple Silicon), VMware, Parallels, or libvirt (Linux); see docs/vm.md"; fi

# CPU virtualization, which every provider needs for a usable speed.
case $os in
  Linux)
    if grep -Eq '(vmx|svm)' /proc/cpuinfo 2>/dev/null || [ -e /dev/kvm ]; then ok "CPU virtualization (VT-x/AMD-V or /dev/kvm)"
    else bad "no CPU virtualization: enable VT-x/AMD-V (SVM) in the firmware settings"; fi ;;
  Darwin)
    if [ "$(sysctl -n kern.hv_support 2>/dev/null)" = 1 ]; then ok "CPU virtualization (Hypervisor.framework)"
    else bad "macOS reports no hypervisor support (kern.hv_support)"; fi ;;
  *) note "cannot check CPU virtualization on $os" ;;
esac

# Free memory.
case $os in
  Linux) free_mb=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo) ;;
  Darwin)
    page=$(sysctl -n hw.pagesize)
    free_mb=$(vm_stat | awk -v p="$page" '/Pages (free|inactive|speculative)/ {gsub(/\./, "", $NF); n += $NF} END {print int(n * p / 1048576)}') ;;
  *) free_mb="" ;;
esac
if [ -z "$free_mb" ]; then note "cannot read free memory on $os"
elif [ "$free_mb" -ge "$NEED_RAM_MB" ]; then ok "free memory ${free_mb} MiB"
else bad "free memory ${free_mb} MiB: close programs or set MINICONTAINER_MEMORY lower (need ~${NEED_RAM_MB} MiB)"; fi

# Free disk where Vagrant keeps boxes (and, for most providers, VM disks).
vhome=${VAGRANT_HOME:-$HOME/.vagrant.d}
[ -d "$vhome" ] || vhome=$HOME
disk_mb=$(df -Pk "$vhome" | awk 'NR == 2 {print int($4 / 1024)}')
if [ "$disk_mb" -ge "$NEED_DISK_MB" ]; then ok "free disk ${disk_mb} MiB in $vhome"
else bad "free disk ${disk_mb} MiB in $vhome: need ~${NEED_DISK_MB} MiB"; fi

# Port: the lab is forwarded to 127.0.0.1:$PORT on this machine.
in_use=""
if command -v lsof >/dev/null 2>&1; then
  lsof -nP -iTCP:"$PORT" -sTCP:LISTEN >/dev/null 2>&1 && in_use=yes
elif command -v ss >/dev/null 2>&1; then
  ss -ltn 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$PORT\$" && in_use=yes
elif command -v netstat >/dev/null 2>&1; then
  netstat -an 2>/dev/null | grep -i listen | grep -Eq "[:.]${PORT}[[:space:]]" && in_use=yes
fi
if [ -n "$in_use" ]; then bad "port $PORT is in use (a local Jupyter?): stop it, or use MINICONTAINER_PORT=8889 vagrant up"
else ok "port $PORT free"; fi

if [ "$problems" = 0 ]; then echo "ready for the workshop"; exit 0; fi
echo "$problems thing(s) to fix before the workshop (docs/vm.md has the details)"
exit 1
