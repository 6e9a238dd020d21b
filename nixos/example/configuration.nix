# A server run by Steward: import the module, name the admins, give it a Matrix account and the
# services it may manage. Secrets are files outside the Nix store (sops-nix, agenix or by hand,
# mode 0400 root): systemd hands them to the bot as credentials.
{ config, ... }:
let
  # What the owners chose from chat (/enable, /disable); false until they choose.
  chosen = id: config.services.steward.desired.services.${id}.enable or false;
in
{
  imports = [
    # Without flakes: a checkout of Steward's repository.
    /opt/steward/nixos/module.nix
    /opt/steward/nixos/desired-state.nix
    # With flakes: steward.nixosModules.default (both of these).
  ];

  # The services follow the chat. Their own settings stay here, in the configuration.
  services.vaultwarden.enable = chosen "vaultwarden";
  services.nextcloud.enable = chosen "nextcloud";

  services.steward = {
    enable = true;
    # What the owners chose from chat, as root admitted it: the rebuild units check the bot's
    # proposal and write what passed into desiredStateDir (/etc/nixos/steward, root's). It is
    # part of this configuration, so a plain rebuild applies it too.
    desiredStateFile = ./steward/desired-state.json;
    settings = {
      admins = [
        "123456789" # a Telegram numeric user id
        "@alice:example.org"
      ];
      operators = [ "@bob:example.org" ];
      two_person = [ "restart" ];
      timezone = "Europe/Berlin";
      domain = "example.org";
      matrix_homeserver = "https://matrix.example.org";
      matrix_user = "@steward:example.org";
    };
    telegramTokenFile = "/run/secrets/steward/telegram-token";
    matrixPasswordFile = "/run/secrets/steward/matrix-password";

    services = {
      vaultwarden = {
        name = "Vaultwarden";
        description = "Password manager";
        units = [ "vaultwarden.service" ];
        folders = [ "/var/lib/vaultwarden" ];
        # It ran here before Steward: recorded as enabled at the first start.
        alreadyRunning = true;
        subdomains = [ "password" ];
        backup = "restic";
      };
      nextcloud = {
        name = "Nextcloud";
        description = "Files, calendars and contacts";
        units = [
          "phpfpm-nextcloud.service"
          "redis-nextcloud.service"
        ];
        # Serves other sites too: shown with Nextcloud, never stopped for it.
        sharedUnits = [ "nginx.service" ];
        folders = [ "/var/lib/nextcloud" ];
        databases = [ "nextcloud" ];
        subdomains = [ "cloud" ];
        movable = true;
        backup = "restic";
      };
    };

    # This server is built from a flake in /etc/nixos; `/upgrade` updates its lock file.
    upgrade = {
      method = "flake";
      flake = "/etc/nixos";
    };
  };
}
