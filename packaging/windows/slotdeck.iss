; Inno Setup script: dist\slotdeck-VERSION-windows-setup.exe from the PyInstaller folder dist\slotdeck\
; (packaging\slotdeck.spec). Build: packaging\windows\build.ps1, which passes /DAppVersion=VERSION.
; Untested on these machines: .github/workflows/installers.yml builds and checks it on a Windows runner.
; Installs per user or for all users (the setup asks), a Start menu entry for the dashboard and an uninstaller;
; it does not change PATH (run "<install dir>\slotdeck.exe serve" or add that folder to PATH yourself).
#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=0.1.0 slotdeck.iss
#endif

[Setup]
AppId={{2B11955A-087A-4AF5-99A7-7B71056A0CD1}
AppName=SlotDeck
AppVersion={#AppVersion}
AppPublisher=The SlotDeck authors
DefaultDirName={autopf}\SlotDeck
DefaultGroupName=SlotDeck
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=slotdeck-{#AppVersion}-windows-setup
Compression=lzma2
SolidCompression=yes
UninstallDisplayIcon={app}\slotdeck.exe

[Files]
Source: "..\..\dist\slotdeck\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\SlotDeck"; Filename: "{app}\slotdeck.exe"; Parameters: "gui"; Comment: "SlotDeck dashboard"
