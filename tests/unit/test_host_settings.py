"""Host settings that refuse what the lab does (Debian's userns sysctl, SELinux), read from files we point at."""

from __future__ import annotations

from minicontainer import doctor
from minicontainer.lab import attacks


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_the_doctor_warns_of_unprivileged_userns_clone_0(tmp_path):
    setting = tmp_path / "unprivileged_userns_clone"
    write(setting, "0")
    [check] = doctor.check_userns_clone(str(setting))
    assert check.name == "unprivileged_userns_clone" and not check.ok and not check.blocker
    assert "kernel.unprivileged_userns_clone=1" in check.fix


def test_the_doctor_says_nothing_of_unprivileged_userns_clone_1_or_a_kernel_without_it(tmp_path):
    setting = tmp_path / "unprivileged_userns_clone"
    write(setting, "1")
    assert doctor.check_userns_clone(str(setting)) == []
    assert doctor.check_userns_clone(str(tmp_path / "absent")) == []


def test_the_doctor_warns_of_an_enforcing_selinux(tmp_path):
    enforce = tmp_path / "enforce"
    write(enforce, "1")
    [check] = doctor.check_selinux(str(enforce))
    assert check.name == "selinux" and not check.ok and not check.blocker
    assert "EACCES" in check.detail and "ausearch -m avc" in check.fix


def test_the_doctor_says_nothing_of_a_permissive_or_absent_selinux(tmp_path):
    enforce = tmp_path / "enforce"
    write(enforce, "0")
    assert doctor.check_selinux(str(enforce)) == []
    assert doctor.check_selinux(str(tmp_path / "absent")) == []


def test_the_userns_attacks_name_what_on_the_host_refuses_them(tmp_path):
    assert attacks._no_user_namespaces(str(tmp_path)) == ""  # none of the settings: nothing in the way
    write(tmp_path / "kernel" / "unprivileged_userns_clone", "1")
    assert attacks._no_user_namespaces(str(tmp_path)) == ""
    write(tmp_path / "kernel" / "unprivileged_userns_clone", "0")
    assert "kernel.unprivileged_userns_clone=0" in attacks._no_user_namespaces(str(tmp_path))
    write(tmp_path / "user" / "max_user_namespaces", "0")
    assert "user.max_user_namespaces=0" in attacks._no_user_namespaces(str(tmp_path))
