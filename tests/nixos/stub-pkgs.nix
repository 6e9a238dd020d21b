# Stand-ins for the packages nixos/module.nix names: store paths that are never built.
let
  package = name: {
    inherit name;
    type = "derivation";
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
in
{
  callPackage = _file: _args: package "steward-0.1.0";
  # The script's text rides along, for the tests to run it.
  writeShellScriptBin = name: text: package name // { inherit text; };
  coreutils = package "coreutils";
  git = package "git";
  nix = package "nix";
  nixos-rebuild = package "nixos-rebuild";
  systemd = package "systemd";
  util-linux = package "util-linux";
  restic = package "restic";
  openssh = package "openssh";
  postgresql = package "postgresql";
  e2fsprogs = package "e2fsprogs";
  xfsprogs = package "xfsprogs";
  smartmontools = package "smartmontools";
  jq = package "jq";
  gawk = package "gawk";
  btrfs-progs = package "btrfs-progs";
  zfs = package "zfs";
  nut = package "nut";
}
