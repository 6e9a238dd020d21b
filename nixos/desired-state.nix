# Applies what the owners chose from chat. Import it beside module.nix.
#
# Steward writes `${services.steward.stateDir}/desired-state.json`, a file its unprivileged
# user owns. This module never reads that file: it reads the copy that root made of it,
# `admittedStateFile`, after `steward admit` checked it in the rebuild unit (the schema, key
# blobs, the zone database, the catalogue, and for a new root key its TOTP code). So what
# the bot's user writes reaches the system only through root's check, and a plain
# nixos-rebuild applies what root last admitted.
#
# It reads a file outside the Nix store while the configuration is evaluated; that is the
# point of it, and why the rebuild units pass --impure to flake builds. A missing file means
# nothing was admitted yet, and changes nothing.
#
# System settings are applied here. Services are switched on by your configuration, reading
# `config.services.steward.desired.services.<id>.enable`; see example/configuration.nix.
{ config, lib, ... }:
let
  cfg = config.services.steward;
  file = cfg.admittedStateFile;
  empty = {
    version = 1;
    services = { };
    system = { };
  };
  desired = if builtins.pathExists file then builtins.fromJSON (builtins.readFile file) else empty;
  system = desired.system or { };
  ssh = system.ssh or { };
in
{
  options.services.steward.admittedStateFile = lib.mkOption {
    type = lib.types.str;
    default = "/var/lib/steward-rebuild/desired-state.json";
    description = ''
      The desired state as root admitted it (module.nix's rebuild units write it). Change it
      only together with their StateDirectory.
    '';
  };

  options.services.steward.desired = lib.mkOption {
    type = lib.types.attrs;
    readOnly = true;
    default = desired;
    description = ''
      The desired state as Steward wrote it (read-only), e.g.
      `config.services.steward.desired.services.nextcloud.enable or false`.
    '';
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = (desired.version or null) == 1;
        message = "${file}: unknown version; this module reads version 1.";
      }
    ];
    time.timeZone = lib.mkIf (system ? timezone) system.timezone;
    system.autoUpgrade = lib.mkIf (system ? autoUpgrade) {
      enable = system.autoUpgrade.enable;
      allowReboot = system.autoUpgrade.allowReboot;
    };
    services.openssh.settings.PasswordAuthentication = lib.mkIf (
      ssh ? passwordAuthentication
    ) ssh.passwordAuthentication;
    # Added to the keys the configuration already has: a key set here never removes another.
    users.users.root.openssh.authorizedKeys.keys = ssh.rootKeys or [ ];
  };
}
