"""The lab VM's files: `vagrant validate` for each provider block, shellcheck for its scripts.

Uses Debian's vagrant (2.3.4, with vagrant-libvirt) and shellcheck. The VirtualBox provider only
validates when `VBoxManage --version` answers, so a stub on PATH answers it; the VMware and Parallels
plugins come from rubygems.org, which CI cannot reach, so a home Vagrantfile registers stand-ins that
accept only the settings those plugins have. Booting the VM is vagrant/acceptance.sh's job, not this.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest
from conftest import REPO

VAGRANT_DIR = os.path.join(REPO, "vagrant")
SCRIPTS = sorted(glob.glob(os.path.join(VAGRANT_DIR, "*.sh")))

# Stand-ins for the vagrant-vmware-desktop and vagrant-parallels plugins: their provider config takes
# only the settings the lab's Vagrantfile uses and the real plugins define; anything else fails validation.
STUB_PLUGINS = """
class MinicontainerStubConfig < Vagrant.plugin("2", :config)
  attr_accessor :cpus, :memory, :gui
  def vmx
    @vmx ||= {}
  end
end

class MinicontainerStubProvider < Vagrant.plugin("2", :provider)
  def self.usable?(raise_error = false)
    true
  end

  def initialize(machine)
    @machine = machine
  end

  def state
    Vagrant::MachineState.new(:not_created, "not created", "a test stand-in")
  end
end

%w[vmware_desktop parallels].each do |prov|
  Class.new(Vagrant.plugin("2")) do
    name "minicontainer test stand-in for #{prov}"
    config(prov.to_sym, :provider) { MinicontainerStubConfig }
    provider(prov.to_sym, box_optional: true) { MinicontainerStubProvider }
  end
end
"""

@pytest.fixture
def vagrant_env(tmp_path):
    # A failure, not a skip: ./lab test installs them, so their absence is a broken set-up.
    assert shutil.which("vagrant"), "vagrant is missing: apt install vagrant vagrant-libvirt (./lab test does)"
    home = tmp_path / "vagrant.d"
    home.mkdir()
    (home / "Vagrantfile").write_text(STUB_PLUGINS)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    vboxmanage = stubs / "VBoxManage"
    vboxmanage.write_text("#!/bin/sh\n# what Vagrant reads to pick its VirtualBox driver\necho 7.0.20r163906\n")
    vboxmanage.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "MINICONTAINER_"))}
    # VAGRANT_DOTFILE_PATH: validate's machine state goes to tmp, not vagrant/.vagrant in the checkout
    env.update(VAGRANT_HOME=str(home), VAGRANT_CWD=VAGRANT_DIR, VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_DOTFILE_PATH=str(tmp_path / "dot-vagrant"),
               PATH=f"{stubs}:{env.get('PATH', '/usr/bin:/bin')}")
    return env


def validate(env: dict, provider: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", "validate"], env={**env, "VAGRANT_DEFAULT_PROVIDER": provider, **extra},
                          cwd=REPO, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("provider", ["virtualbox", "vmware_desktop", "parallels"])
def test_vagrant_validate(vagrant_env, provider):
    out = validate(vagrant_env, provider)
    assert out.returncode == 0 and "validated successfully" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_vagrant_validate_libvirt(vagrant_env):
    """The libvirt block with rsync: the other sync modes ask the host (libvirtd, nfsd) while validating."""
    out = validate(vagrant_env, "libvirt", MINICONTAINER_SYNC="rsync")
    assert out.returncode == 0 and "validated successfully" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_vagrant_settings_are_overridable_and_checked(vagrant_env):
    out = validate(vagrant_env, "virtualbox", MINICONTAINER_CPUS="4", MINICONTAINER_MEMORY="4096",
                   MINICONTAINER_BOX="example/other", MINICONTAINER_PORT="18888")
    assert out.returncode == 0, out.stdout + out.stderr
    out = validate(vagrant_env, "libvirt", MINICONTAINER_SYNC="smb")
    assert out.returncode != 0 and "MINICONTAINER_SYNC must be" in out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_arm64_host_gets_an_arm64_box_or_is_told_why_not(vagrant_env):
    """On Apple Silicon the providers with a bento arm64 box validate; libvirt, which has none, stops with what
    to do, unless another box is named. (Vagrant 2.4+ picks the box's architecture; Debian's 2.3.4 here cannot,
    so only the Vagrantfile's own decision is checked.)"""
    arm64 = {"MINICONTAINER_HOST_ARCH": "arm64"}
    out = validate(vagrant_env, "virtualbox", **arm64)
    assert out.returncode == 0, out.stdout + out.stderr
    out = validate(vagrant_env, "libvirt", MINICONTAINER_SYNC="rsync", **arm64)
    assert out.returncode != 0 and "has no arm64 box for libvirt" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "MINICONTAINER_BOX" in out.stdout + out.stderr
    out = validate(vagrant_env, "libvirt", MINICONTAINER_SYNC="rsync", MINICONTAINER_BOX="example/arm64-libvirt",
                   **arm64)
    assert out.returncode == 0, out.stdout + out.stderr


def test_jupyterlab_forward_is_host_loopback_only():
    with open(os.path.join(VAGRANT_DIR, "Vagrantfile")) as f:
        text = f.read()
    forwards = [line for line in text.splitlines() if "forwarded_port" in line]
    assert forwards, "the Vagrantfile forwards JupyterLab's port"
    assert 'host_ip: "127.0.0.1"' in text and "host_ip: nil" not in text


@pytest.mark.parametrize("script", SCRIPTS, ids=[os.path.basename(s) for s in SCRIPTS])
def test_shellcheck(script):
    # A failure, not a skip: ./lab test installs shellcheck, so its absence is a broken set-up.
    assert shutil.which("shellcheck"), "shellcheck is missing: apt install shellcheck (./lab test does)"
    out = subprocess.run(["shellcheck", "-x", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_scripts_and_vagrantfile_stay_lf_on_windows_checkouts():
    paths = ["vagrant/Vagrantfile"] + [os.path.relpath(s, REPO) for s in SCRIPTS]
    out = subprocess.run(["git", "check-attr", "eol", "--", *paths], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: " + out.stderr.strip())
    assert out.stdout.count(": eol: lf") == len(paths), out.stdout
