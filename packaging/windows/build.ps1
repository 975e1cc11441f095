# Windows: the PyInstaller folder dist\slotdeck\ and its installer dist\slotdeck-VERSION-windows-setup.exe.
# Needs the venv's Python with the packaging extra (pip install -e ".[desktop,packaging]") and Inno Setup 6 (iscc).
# Untested on these machines: .github/workflows/installers.yml builds and checks it on a Windows runner.
param([string]$Python = ".venv\Scripts\python.exe", [string]$Iscc = "iscc")
$ErrorActionPreference = "Stop"
$root = Resolve-Path "$PSScriptRoot\..\.."
& $Python -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$root\dist" --workpath "$root\build\windows" "$root\packaging\slotdeck.spec"
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
$version = ((& "$root\dist\slotdeck\slotdeck.exe" --version) -split ' ')[1]
& $Iscc "/DAppVersion=$version" "$root\packaging\windows\slotdeck.iss"
if ($LASTEXITCODE -ne 0) { throw "iscc failed" }
Write-Output "built $root\dist\slotdeck-$version-windows-setup.exe"
