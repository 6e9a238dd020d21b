# Applies what the owners chose from chat, as root admitted it. Import it beside module.nix
# (the root flake's nixosModules.default imports both) and point `desiredStateFile` at the
# admitted copy in the configuration:
#
#   services.steward.desiredStateFile = ./steward/desired-state.json;
#
# Steward writes its proposal to `${services.steward.stateDir}/desired-state.json`, a file its
# unprivileged user owns. This module never reads that file. Before each rebuild the rebuild
# unit runs `steward admit` as root: it checks the proposal (the schema, key blobs, the zone
# database, the catalogue, and for a new root key its TOTP code) and writes what passed to
# `${services.steward.desiredStateDir}/desired-state.json` (/etc/nixos/steward by default), a
# root-owned folder of this configuration, adding it to git (--intent-to-add) when it is new.
# So what the bot's user writes reaches the system only through root's check.
#
# The admitted copy is part of the configuration, so the evaluation is pure: a plain
# `nixos-rebuild switch --flake /etc/nixos` applies what root last admitted, the same as the
# bot's own rebuild, and no --impure is needed.
#
# No file yet means root has admitted nothing yet: then the services the catalogue marks
# `alreadyRunning` count as enabled, which is also what the bot records on its first start.
# A first deploy on a running server therefore turns nothing off.
#
# System settings are applied here. Services are switched on by your configuration, reading
# `config.services.steward.desired.services.<id>.enable`; see example/configuration.nix.
{ config, lib, ... }:
let
  cfg = config.services.steward;
  file = cfg.desiredStateFile;
  firstStart = {
    version = 1;
    services = lib.mapAttrs (_: _: { enable = true; }) (
      lib.filterAttrs (_: service: service.alreadyRunning) cfg.services
    );
    system = { };
  };
  desired =
    if file != null && builtins.pathExists file then
      builtins.fromJSON (builtins.readFile file)
    else
      firstStart;
  system = desired.system or { };
  ssh = system.ssh or { };
in
{
  options.services.steward = {
    desiredStateFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = lib.literalExpression "./steward/desired-state.json";
      description = ''
        The desired state root admitted, as this configuration sees it: a path relative to
        the configuration, naming the file `steward admit` writes into `desiredStateDir`,
        e.g. `./steward/desired-state.json` for a configuration in /etc/nixos.
      '';
    };

    desired = lib.mkOption {
      type = lib.types.attrs;
      readOnly = true;
      default = desired;
      description = ''
        The desired state as root admitted it (read-only), e.g.
        `config.services.steward.desired.services.nextcloud.enable or false`.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = file != null;
        message = "services.steward.desiredStateFile is not set: without it, a rebuild would not see what was chosen from chat. Set it to the file root admits into services.steward.desiredStateDir, as the configuration sees it, e.g. ./steward/desired-state.json.";
      }
      {
        assertion = (desired.version or null) == 1;
        message = "${toString file}: unknown version; this module reads version 1.";
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
