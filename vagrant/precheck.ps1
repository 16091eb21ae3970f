# Pre-workshop check for Windows hosts (Linux/macOS: precheck.sh):
#   powershell -ExecutionPolicy Bypass -File vagrant\precheck.ps1
# Says whether this machine can run the lab VM. Exit status 0 = ready, 1 = something to fix. Changes nothing.
$Port = if ($env:MINICONTAINER_PORT) { [int]$env:MINICONTAINER_PORT } else { 8888 }
$script:Problems = 0
function Ok($m)   { Write-Host "  ok    $m" }
function Bad($m)  { Write-Host "  FIX   $m"; $script:Problems++ }
function Note($m) { Write-Host "  note  $m" }

Write-Host "minicontainer lab pre-check on Windows $([Environment]::OSVersion.Version) $env:PROCESSOR_ARCHITECTURE"

# Vagrant 2.4+: bento boxes are published per architecture, which older Vagrant cannot pick.
$plugins = ""
if (Get-Command vagrant -ErrorAction SilentlyContinue) {
  $v = ((vagrant --version) -split ' ')[1]
  if ([version]$v -ge [version]'2.4.0') { Ok "vagrant $v" } else { Bad "vagrant $v is too old: install 2.4 or newer" }
  $plugins = (vagrant plugin list) -join "`n"
} else { Bad "vagrant is not installed: https://developer.hashicorp.com/vagrant/install" }

# Providers. VirtualBox is the usual one on Windows; VMware Workstation needs the utility and plugin.
$providers = @()
$vbox = Join-Path $env:ProgramFiles 'Oracle\VirtualBox\VBoxManage.exe'
if (Test-Path $vbox) { $providers += "virtualbox $((& $vbox --version) -replace 'r.*','')" }
if (Get-Command vmrun -ErrorAction SilentlyContinue) {
  if ($plugins -match 'vagrant-vmware-desktop') { $providers += 'vmware_desktop' }
  else { Note "VMware found: install the Vagrant VMware Utility and 'vagrant plugin install vagrant-vmware-desktop'" }
}
if ($providers.Count -gt 0) { Ok "provider(s): $($providers -join ', ')" }
else { Bad "no provider: install VirtualBox (https://www.virtualbox.org) or VMware Workstation; see docs/vm.md" }

# CPU virtualization; Hyper-V (or WSL2, or Memory Integrity) slows VirtualBox down or stops it.
$cpu = Get-CimInstance Win32_Processor | Select-Object -First 1
$hv = (Get-CimInstance Win32_ComputerSystem).HypervisorPresent
if ($cpu.VirtualizationFirmwareEnabled -or $hv) { Ok "CPU virtualization enabled" }
else { Bad "CPU virtualization is off: enable VT-x / AMD-V (SVM) in the firmware settings" }
if ($hv) { Note "Hyper-V is active (WSL2 or Windows features): VirtualBox then runs slower; VMware copes better" }

# Memory and disk.
$freeMB = [int]((Get-CimInstance Win32_OperatingSystem).FreePhysicalMemory / 1024)
if ($freeMB -ge 3072) { Ok "free memory $freeMB MiB" } else { Bad "free memory $freeMB MiB: need ~3072 MiB (or set MINICONTAINER_MEMORY lower)" }
$drive = (Get-Item $env:USERPROFILE).PSDrive
$diskMB = [int]($drive.Free / 1MB)
if ($diskMB -ge 10240) { Ok "free disk $diskMB MiB on $($drive.Name):" } else { Bad "free disk $diskMB MiB on $($drive.Name): need ~10240 MiB" }

# The lab is forwarded to 127.0.0.1:$Port.
if (Get-NetTCPConnection -State Listen -LocalPort $Port -ErrorAction SilentlyContinue) {
  Bad "port $Port is in use (a local Jupyter?): stop it, or set MINICONTAINER_PORT=8889 before vagrant up"
} else { Ok "port $Port free" }

if ($script:Problems -eq 0) { Write-Host "ready for the workshop"; exit 0 }
Write-Host "$script:Problems thing(s) to fix before the workshop (docs/vm.md has the details)"
exit 1
