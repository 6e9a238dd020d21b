# services.steward: the Steward chat bot, its root rebuild units and the polkit rule that lets
# it start them. Written against a small part of lib on purpose: tests/nixos/stub-lib.nix
# evaluates this file without nixpkgs, so every lib function used here must exist there too.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.steward;

  # pyproject.toml's extras that these settings need: a Telegram-only bot installs no Matrix
  # library, a server at home no cloud SDK (package.nix maps each to nixpkgs' packages).
  cloudExtras = [
    "hetzner"
    "digitalocean"
    "scaleway"
    "ovh"
  ];
  neededExtras =
    lib.optional ((cfg.settings.matrix_homeserver or null) != null) "matrix"
    ++ lib.optional ((cfg.settings.matrix_e2ee or false) == true) "matrix-e2ee"
    ++ lib.optional (builtins.elem (cfg.settings.server_provider or "none") cloudExtras) cfg.settings.server_provider
    ++ lib.optional ((cfg.settings.dns_provider or "none") == "cloudflare") "cloudflare"
    ++ lib.optional (cfg.b2KeyIdFile != null) "b2"
    ++ lib.optional (lib.hasPrefix "postgresql" (cfg.settings.database_url or "")) "postgres";

  catalogueFile = "/etc/steward/catalogue.json";
  rebuildUnits = [
    "steward-rebuild.service"
    "steward-upgrade.service"
  ];
  # steward-rollback@N.service switches to generation N.
  rollbackUnit = "^steward-rollback@[0-9]{1,9}\\.service$";
  # steward-growfs@<systemd-escaped device>.service grows the filesystem of a Hetzner volume
  # after /resize; the unit name holds a literal backslash (\x2d is an escaped "-").
  growfsUnit = "^steward-growfs@dev-disk-by\\\\x2did-scsi\\\\x2d0HC_Volume_[0-9]{1,12}\\.service$";
  # steward-backup@<service>:<reason> and steward-restore@<service>:<snapshot|recover> back up
  # and restore one service's data as root (the worker checks the instance again).
  # Only the reasons, `recover` and hex snapshot ids: nothing that could read as an option.
  # JavaScript's `$` is the end of the text, so a trailing newline does not pass either.
  backedUp = lib.attrNames (lib.filterAttrs (_: service: service.folders != [ ]) cfg.services);
  backedUpIds = lib.concatStringsSep "|" backedUp;
  dataUnit =
    if backedUp == [ ] then
      "^$"
    else
      "^steward-(backup@(${backedUpIds}):(manual|scheduled)|restore@(${backedUpIds}):(recover|[0-9a-f]{8,64}))\\.service$";

  # Root's own folder for the rebuild units: the ledger of root-key codes. The bot cannot
  # write here.
  admittedDir = "/var/lib/steward-rebuild";
  # The bot's proposal, in its own state folder: the only desired state it may write.
  proposedStateFile = "${cfg.stateDir}/desired-state.json";
  # Root's admitted copy, in the configuration (desiredStateDir): what desired-state.nix reads,
  # purely, as `desiredStateFile`.
  desiredStateFile = "${cfg.desiredStateDir}/desired-state.json";
  # A git flake sees only files git knows: steward admit adds the copy with --intent-to-add.
  flakePrefix = "${cfg.upgrade.flake}/";
  admittedInFlake = cfg.upgrade.method == "flake" && lib.hasPrefix flakePrefix desiredStateFile;
  admitCommand = lib.concatStringsSep " " (
    [
      "${cfg.package}/bin/steward admit"
      "--source ${lib.escapeShellArg proposedStateFile}"
      "--state-dir ${admittedDir}"
      "--admitted ${lib.escapeShellArg desiredStateFile}"
      "--catalogue ${catalogueFile}"
    ]
    ++ lib.optional admittedInFlake "--flake ${lib.escapeShellArg cfg.upgrade.flake}"
    ++ lib.optional cfg.allowRootKeysFromChat ''--root-key-totp "$CREDENTIALS_DIRECTORY/root-key-totp"''
  );
  # Database roles restores log in as: NixOS names a service's role after its database.
  databaseRoles = builtins.attrNames (
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = null;
      }) (lib.concatMap (service: service.databases) (lib.attrValues cfg.services))
    )
  );
  # Steward's own snapshot (database, desired state, /etc/nixos, DKIM keys, catalogue) is
  # taken as root too: `steward` is no catalogue id, so it has a rule of its own, backup only.
  selfUnit = "^steward-backup@steward:(scheduled|manual|pre-upgrade)\\.service$";

  # option name -> (credential name, STEWARD_* variable that points at it)
  secretOptions = {
    telegramTokenFile = {
      credential = "telegram-token";
      variable = "STEWARD_TELEGRAM_TOKEN_FILE";
    };
    matrixPasswordFile = {
      credential = "matrix-password";
      variable = "STEWARD_MATRIX_PASSWORD_FILE";
    };
    matrixAccessTokenFile = {
      credential = "matrix-access-token";
      variable = "STEWARD_MATRIX_ACCESS_TOKEN_FILE";
    };
    hcloudTokenFile = {
      credential = "hcloud-token";
      variable = "STEWARD_HCLOUD_TOKEN_FILE";
    };
    digitaloceanTokenFile = {
      credential = "digitalocean-token";
      variable = "STEWARD_DIGITALOCEAN_TOKEN_FILE";
    };
    scalewayAccessKeyFile = {
      credential = "scaleway-access-key";
      variable = "STEWARD_SCALEWAY_ACCESS_KEY_FILE";
    };
    scalewaySecretKeyFile = {
      credential = "scaleway-secret-key";
      variable = "STEWARD_SCALEWAY_SECRET_KEY_FILE";
    };
    ovhApplicationKeyFile = {
      credential = "ovh-application-key";
      variable = "STEWARD_OVH_APPLICATION_KEY_FILE";
    };
    ovhApplicationSecretFile = {
      credential = "ovh-application-secret";
      variable = "STEWARD_OVH_APPLICATION_SECRET_FILE";
    };
    ovhConsumerKeyFile = {
      credential = "ovh-consumer-key";
      variable = "STEWARD_OVH_CONSUMER_KEY_FILE";
    };
    cloudflareTokenFile = {
      credential = "cloudflare-token";
      variable = "STEWARD_CLOUDFLARE_TOKEN_FILE";
    };
    rfc2136TsigFile = {
      credential = "tsig-key";
      variable = "STEWARD_RFC2136_TSIG_FILE";
    };
    b2KeyIdFile = {
      credential = "b2-key-id";
      variable = "STEWARD_B2_KEY_ID_FILE";
    };
    b2KeyFile = {
      credential = "b2-key";
      variable = "STEWARD_B2_KEY_FILE";
    };
    resticPasswordFile = {
      credential = "restic-password";
      variable = "STEWARD_RESTIC_PASSWORD_FILE";
    };
    # A rest: or sftp: URL may hold a password; as a credential it stays out of the store.
    resticRepositoryFile = {
      credential = "restic-repository";
      variable = "STEWARD_RESTIC_REPOSITORY_FILE";
    };
    # AWS_ACCESS_KEY_ID=…, AWS_SECRET_ACCESS_KEY=… (and AWS_DEFAULT_REGION) for S3 and B2.
    resticEnvironmentFile = {
      credential = "restic-environment";
      variable = "STEWARD_RESTIC_ENVIRONMENT_FILE";
    };
    # The key ssh logs in with to an sftp: repository.
    resticSshKeyFile = {
      credential = "restic-ssh-key";
      variable = "STEWARD_RESTIC_SSH_KEY_FILE";
    };
    # Not a secret, but passed the same way so that the bot and the root units read one copy.
    resticKnownHostsFile = {
      credential = "restic-known-hosts";
      variable = "STEWARD_RESTIC_KNOWN_HOSTS_FILE";
    };
    # Seals the admins' TOTP secrets in the database: never in the database or the store.
    totpKeyFile = {
      credential = "totp-key";
      variable = "STEWARD_TOTP_KEY_FILE";
    };
  };
  givenSecrets = lib.filterAttrs (option: _: cfg.${option} != null) secretOptions;

  # Settings that hold a secret's value: they would land in the world-readable Nix store.
  secretSettings = [
    "telegram_token"
    "matrix_password"
    "matrix_access_token"
    "hcloud_token"
    "digitalocean_token"
    "scaleway_access_key"
    "scaleway_secret_key"
    "ovh_application_key"
    "ovh_application_secret"
    "ovh_consumer_key"
    "cloudflare_token"
    "b2_key_id"
    "b2_key"
    "totp_key"
  ];
  # Settings the module sets itself from its own options.
  ownSettings = [
    "state_dir"
    "catalogue"
    "desired_state"
    "name"
    "watch"
  ];
  # A Steward's short name, as STEWARD_NAME and STEWARD_WATCH take it (bot/config.py).
  stewardName = types.strMatching "[a-z0-9][a-z0-9_-]{0,31}";

  renderValue =
    value:
    if builtins.isBool value then
      (if value then "1" else "0")
    else if builtins.isList value then
      lib.concatStringsSep "," (map toString value)
    else
      toString value;

  settingsEnvironment = lib.mapAttrs' (
    key: value: lib.nameValuePair "STEWARD_${lib.toUpper key}" (renderValue value)
  ) (lib.filterAttrs (_: value: value != null) cfg.settings);

  # toString, not interpolation: "${./file}" would copy a path literal into the store.
  credentials = lib.mapAttrsToList (
    option: secret: "${secret.credential}:${toString cfg.${option}}"
  ) givenSecrets;
  credentialEnvironment = lib.mapAttrs' (
    _: secret: lib.nameValuePair secret.variable "%d/${secret.credential}"
  ) givenSecrets;

  catalogue = {
    services = lib.mapAttrsToList (id: service: {
      inherit id;
      inherit (service)
        name
        description
        units
        folders
        databases
        subdomains
        movable
        backup
        ;
      shared_units = service.sharedUnits;
      already_running = service.alreadyRunning;
    }) cfg.services;
  };
  sharedUnits = lib.concatMap (service: service.sharedUnits) (lib.attrValues cfg.services);
  # What the bot may start, stop and restart: the services' own units, never a shared one
  # (nginx serves every site, postgresql every database), even if a service lists it as its own.
  catalogueUnits = builtins.filter (unit: !(builtins.elem unit (sharedUnits ++ commonlyShared))) (
    lib.concatMap (service: service.units) (lib.attrValues cfg.services)
  );
  # Units that serve more than one service on a typical server: only ever sharedUnits.
  commonlyShared = [
    "nginx.service"
    "caddy.service"
    "httpd.service"
    "postgresql.service"
    "mysql.service"
    "redis.service"
  ];

  # Unit and verb names are embedded as JSON literals, which are valid JavaScript.
  polkitRule = ''
    // Steward: its user may start the rebuild units, and start, stop or restart the services'
    // own units in its catalogue, never the shared ones (nginx, postgresql, redis). Nothing else
    // is granted here.
    polkit.addRule(function (action, subject) {
      // /reboot: systemctl reboot asks logind.
      if (subject.user == "steward" && (action.id == "org.freedesktop.login1.reboot" ||
          action.id == "org.freedesktop.login1.reboot-multiple-sessions")) {
        return polkit.Result.YES;
      }
      if (action.id != "org.freedesktop.systemd1.manage-units" || subject.user != "steward") {
        return polkit.Result.NOT_HANDLED;
      }
      var unit = action.lookup("unit");
      var verb = action.lookup("verb");
      var rebuildUnits = ${builtins.toJSON rebuildUnits};
      var rollbackUnit = new RegExp(${builtins.toJSON rollbackUnit});
      var growfsUnit = new RegExp(${builtins.toJSON growfsUnit});
      var dataUnit = new RegExp(${builtins.toJSON dataUnit});
      var selfUnit = new RegExp(${builtins.toJSON selfUnit});
      var serviceUnits = ${builtins.toJSON catalogueUnits};
      if ((rebuildUnits.indexOf(unit) >= 0 || rollbackUnit.test(unit) || growfsUnit.test(unit) ||
           dataUnit.test(unit) || selfUnit.test(unit)) && verb == "start") {
        return polkit.Result.YES;
      }
      if (serviceUnits.indexOf(unit) >= 0 && ${builtins.toJSON [
        "start"
        "stop"
        "restart"
      ]}.indexOf(verb) >= 0) {
        return polkit.Result.YES;
      }
      return polkit.Result.NOT_HANDLED;
    });
  '';

  switchCommand =
    extra:
    lib.concatStringsSep " " (
      [
        "nixos-rebuild"
        "switch"
      ]
      # No --impure: the desired state root admitted is a file of the flake itself
      # (desiredStateDir), so this is the very evaluation a plain `nixos-rebuild switch` makes.
      ++ lib.optional (cfg.upgrade.method == "flake") "--flake ${lib.escapeShellArg cfg.upgrade.flake}"
      ++ extra
    );

  # As system.autoUpgrade does: the environment nixos-rebuild needs when run by systemd.
  rebuildUnit = description: script: {
    inherit description script;
    # A switch restarts changed units; this one must not be stopped or restarted by its own run.
    restartIfChanged = false;
    stopIfChanged = false;
    unitConfig.X-StopOnRemoval = false;
    serviceConfig.Type = "oneshot";
    environment =
      config.nix.envVars
      // {
        inherit (config.environment.sessionVariables) NIX_PATH;
        HOME = "/root";
      }
      // config.networking.proxy.envVars;
    path = [
      config.system.build.nixos-rebuild
      config.nix.package
      pkgs.git
      pkgs.coreutils
    ];
  };

  # steward-rebuild and steward-upgrade evaluate the configuration: root checks the bot's
  # desired state first and writes what passed into the configuration, and the evaluation
  # reads that copy (desired-state.nix), never the bot's file.
  evaluatingUnit =
    description: script:
    let
      unit = rebuildUnit description ''
        ${admitCommand}
        ${script}
      '';
    in
    unit
    // {
      serviceConfig =
        unit.serviceConfig
        // {
          StateDirectory = "steward-rebuild";
          StateDirectoryMode = "0700";
        }
        // lib.optionalAttrs cfg.allowRootKeysFromChat {
          # Only these units read it: the bot never has the secret its codes are checked with.
          LoadCredential = [ "root-key-totp:${toString cfg.rootKeyTotpFile}" ];
        };
    };

  # What the bot and its root workers share: settings, secrets as credentials, the catalogue.
  botEnvironment =
    settingsEnvironment
    // credentialEnvironment
    // {
      STEWARD_STATE_DIR = cfg.stateDir;
      STEWARD_CATALOGUE = catalogueFile;
      # Steward's own snapshot, taken by the root unit, reads it from here.
      STEWARD_DESIRED_STATE = "${cfg.stateDir}/desired-state.json";
      # The bot may not read the services' data: backups and restores run in dataJob units,
      # which keep their journal, dumps and status in a folder of their own.
      STEWARD_BACKUP_UNITS = "1";
      STEWARD_WORKER_DIR = "/var/lib/steward-worker";
    }

    // lib.optionalAttrs (cfg.name != null) { STEWARD_NAME = cfg.name; }
    // lib.optionalAttrs (cfg.watch != null) { STEWARD_WATCH = cfg.watch; }
    // lib.optionalAttrs cfg.postgresql.enable {
      STEWARD_POSTGRES_HOST = "/run/postgresql";
      STEWARD_POSTGRES_USER = "postgres";
    };

  # The bot's unit environment, also the `steward` wrapper's.
  unitEnvironment =
    botEnvironment
    // {
      # The bot's proposal; root admits it into desiredStateDir before each rebuild.
      STEWARD_DESIRED_STATE = proposedStateFile;
      # Only so /sshkey add can say at once what root would refuse; root decides.
      STEWARD_ROOT_KEYS_FROM_CHAT = if cfg.allowRootKeysFromChat then "1" else "0";
    }
    // lib.optionalAttrs (cfg.upgrade.method == "flake") {
      STEWARD_UPGRADE_FLAKE = cfg.upgrade.flake;
    }
    // lib.optionalAttrs cfg.hardware.enable {
      STEWARD_HEALTH_DIR = healthDir;
    };
  botPath = [
    config.systemd.package
    config.system.build.nixos-rebuild
    pkgs.restic # snapshots, check, drill and forget need no access to the services' data
    pkgs.openssh # sftp: repositories
  ]
  # upsc asks upsd over TCP: no privilege needed.
  ++ lib.optional ((cfg.settings.ups or null) != null) pkgs.nut;

  # `steward` on the server: the bot's program as the bot's user, with the bot's settings and
  # secrets, so that `steward console`, `doctor`, `db`, `totp` and `lockdown` act on the real
  # state. Root runs it through systemd-run, which loads the secrets as credentials of a
  # transient unit exactly as for the bot (they are root-only files); nobody else may.
  wrapperEnvironment = lib.mapAttrs (
    name: value:
    if credentialEnvironment ? ${name} then
      "\"$credentials\"/${lib.escapeShellArg (lib.removePrefix "%d/" value)}"
    else
      lib.escapeShellArg value
  ) unitEnvironment;
  plainEnvironment = lib.filterAttrs (name: _: !(credentialEnvironment ? ${name})) wrapperEnvironment;
  setenv = environment: lib.mapAttrsToList (name: value: "${name}=${value}") environment;
  # pg_restore and psql for `steward recover` of a bot whose own database is PostgreSQL.
  botOnPostgres = lib.hasPrefix "postgresql" (cfg.settings.database_url or "");
  # …on this server, through the socket: no host, or a host that is a folder.
  botOnLocalPostgres =
    botOnPostgres
    && (
      builtins.match "postgresql[+a-z0-9]*://([^@/]*@)?/.*" cfg.settings.database_url != null
      || builtins.match ".*[?&]host=/.*" cfg.settings.database_url != null
    );
  wrapperPath = lib.concatStringsSep ":" (
    map (p: "${p}/bin") (botPath ++ lib.optional botOnPostgres config.services.postgresql.package)
  );
  wrapper = pkgs.writeShellScriptBin "steward" ''
    set -eu
    program=${cfg.package}/bin/steward
    if [ "$(id -u)" = 0 ]; then
      unit="steward-cli-$$"
      credentials="/run/credentials/$unit.service"
      if [ -t 0 ] && [ -t 1 ]; then mode=--pty; else mode=--pipe; fi
      # `recover` stays root: it writes /etc/nixos and the DKIM keys, and restores the old
      # server's snapshots through steward-restore-foreign@, which polkit never grants the bot.
      user=steward
      if [ "''${1:-}" = recover ]; then user=root; fi
      exec ${config.systemd.package}/bin/systemd-run "$mode" --wait --collect --quiet \
        --unit="$unit" --uid="$user" --gid="$user" \
        --working-directory=${lib.escapeShellArg cfg.stateDir} \
        ${lib.concatStringsSep " " (map (c: "--property=LoadCredential=${lib.escapeShellArg c}") credentials)} \
        ${lib.concatStringsSep " " (map (e: "--setenv=${e}") (setenv wrapperEnvironment))} \
        --setenv=PATH=${wrapperPath} -- "$program" "$@"
    fi
    if [ "$(id -un)" = steward ]; then
      # The bot's own user: its settings and state, but not the secrets (root-only files).
      cd ${lib.escapeShellArg cfg.stateDir}
      exec env ${lib.concatStringsSep " " (setenv plainEnvironment)} PATH=${wrapperPath} "$program" "$@"
    fi
    echo "steward: this acts as the bot on the server's real state, so only root (sudo steward ...) or the steward user may run it." >&2
    exit 1
  '';

  # Hardening the bot and its root workers share.
  commonHardening = {
    PrivateTmp = true;
    NoNewPrivileges = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
  };

  # steward-backup@ and steward-restore@: `steward worker` as root, for one service at a time.
  dataJob = kind: description: {
    inherit description;
    # A switch must not stop a restore half-way.
    restartIfChanged = false;
    stopIfChanged = false;
    environment = botEnvironment;
    path = [
      pkgs.restic
      pkgs.openssh # sftp: repositories
      config.systemd.package
    ]
    # pg_dump for the services' databases, and for the bot's own in Steward's own snapshot.
    ++ lib.optional (cfg.postgresql.enable || botOnPostgres) config.services.postgresql.package;
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${cfg.package}/bin/steward worker ${kind} %i";
      LoadCredential = credentials;
      CacheDirectory = "steward-worker";
      # Root's own: it never writes where the bot could have left a link. The bot reads the
      # status files in jobs/ (0644); the dumps and the journal stay 0700.
      StateDirectory = "steward-worker";
      StateDirectoryMode = "0755";
      UMask = "0077";
      # A device node in a snapshot stays a file: no mknod, no devices but the pseudo ones.
      PrivateDevices = true;
    }
    // commonHardening;
  };

  # steward-health: what the bot may not read itself, recorded as root into a folder the bot
  # reads (STEWARD_HEALTH_DIR). SMART needs raw commands to the disks (CAP_SYS_RAWIO for ATA
  # pass-through, CAP_SYS_ADMIN for NVMe admin commands), zpool needs /dev/zfs. Giving the
  # chat-facing bot those, or the disk group (read access to every byte on every disk), would
  # be far more than it needs: this unit has them, no network and no bot code, and only
  # writes smartctl's, zpool's and btrfs's own output for the bot to parse.
  healthDir = "/var/lib/steward-health";
  healthScript = ''
    set -u
    out="$STATE_DIRECTORY"
    # Each file is replaced whole, so the bot never reads half of one.
    write() { cat > "$out/.$1.tmp"; mv -f "$out/.$1.tmp" "$out/$1"; }
    smartctl --json --scan > "$out/.scan"
    jq -r '.devices[] | "\(.name) \(.type)"' "$out/.scan" | while read -r device type; do
      name=$(printf '%s' "''${device#/dev/}" | tr / _).json
      # -n standby: a sleeping disk is not spun up; smartctl's exit status is in its JSON.
      smartctl --json -a -n standby -d "$type" "$device" | write "$name" || true
    done
    write scan.json < "$out/.scan" # last: its time stamp says when the disks were read
    ${if cfg.hardware.zfs then "zpool status -x | write zpool-status.txt" else ""}
    awk '$3 == "btrfs" { print $2 }' /proc/self/mounts | sort -u | while read -r mount; do
      btrfs device stats -- "$mount" | write "btrfs-$(systemd-escape --path "$mount").txt" || true
    done
  '';

  serviceType = types.submodule (
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
          description = "Name shown in chat.";
        };
        description = mkOption {
          type = types.str;
          default = "";
          description = "One line on what the service is.";
        };
        units = mkOption {
          type = types.listOf types.str;
          description = "Its own systemd units, e.g. `[ \"vaultwarden.service\" ]`; the bot may start, stop and restart them.";
        };
        sharedUnits = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "nginx.service"
            "postgresql.service"
          ];
          description = ''
            Units it needs but shares with other services (the web server, the database
            server). Shown with its status; never started, stopped or restarted for it, and the
            bot may not stop them at all.
          '';
        };
        alreadyRunning = mkOption {
          type = types.bool;
          default = false;
          description = ''
            It already runs on this server, enabled by your configuration before Steward came.
            On its first start the bot records it as enabled, so the first deploy changes
            nothing (see `desiredStateFile`).
          '';
        };
        folders = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Folders holding its data (sizes, backups).";
        };
        databases = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Its PostgreSQL databases.";
        };
        subdomains = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Subdomains of `settings.domain` it answers on.";
        };
        movable = mkOption {
          type = types.bool;
          default = false;
          description = "Whether its data may be moved to another volume.";
        };
        backup = mkOption {
          type = types.str;
          default = "";
          description = "How it is backed up (empty: not backed up).";
        };
      };
    }
  );

  secretOption =
    what:
    mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/steward/${what}";
      description = ''
        File holding the ${what}, outside the Nix store. It reaches the bot as a systemd
        credential (`LoadCredential`), so it may be readable by root only.
      '';
    };
in
{
  options.services.steward = {
    enable = lib.mkEnableOption "Steward, the chat bot that runs this server";

    extras = mkOption {
      type = types.listOf (
        types.enum (
          cloudExtras
          ++ [
            "matrix"
            "matrix-e2ee"
            "cloudflare"
            "b2"
            "postgres"
          ]
        )
      );
      default = neededExtras;
      defaultText = lib.literalExpression "the extras that `settings` needs";
      description = ''
        Optional parts of Steward to install: `matrix` with `settings.matrix_homeserver` (and
        `matrix-e2ee` with `settings.matrix_e2ee = true`), the
        SDK of `settings.server_provider` and of `settings.dns_provider = "cloudflare"`, `b2`
        with `b2KeyIdFile`, `postgres` with a PostgreSQL `settings.database_url`.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { inherit (cfg) extras; };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { inherit (cfg) extras; }";
      description = "The Steward package.";
    };

    settings = mkOption {
      type = types.attrsOf (
        types.nullOr (
          types.oneOf [
            types.bool
            types.int
            types.str
            types.path
            (types.listOf types.str)
          ]
        )
      );
      default = { };
      example = {
        admins = [
          "123456789"
          "@alice:example.org"
        ];
        matrix_homeserver = "https://matrix.example.org";
        matrix_user = "@steward:example.org";
        timezone = "Europe/Berlin";
      };
      description = ''
        Steward's settings (README, Configuration), by their lower-case names without the
        `STEWARD_` prefix. Each becomes an environment variable: lists are joined with commas,
        booleans become `1` or `0`, `null` leaves the variable unset. Secrets are not allowed
        here; use the `*File` options.
      '';
    };

    name = mkOption {
      type = types.nullOr stewardName;
      default = null;
      example = "vps";
      description = ''
        This server's short name (`STEWARD_NAME`): a-z, 0-9, `-` and `_`, at most 32. Where
        several Stewards share a chat it addresses this one (`/restart nextcloud @vps`) and
        heads its reports and alerts. `null`: the host name. A Steward named here introduces
        itself in its Telegram groups, so that the other Stewards there learn of it.
      '';
    };

    watch = mkOption {
      type = types.nullOr stewardName;
      default = null;
      example = "home-box";
      description = ''
        The name of one other Steward in a shared chat whose heartbeat this one watches
        (`STEWARD_WATCH`): the admins get an alert when it falls silent, and another when it
        answers again. On Telegram this needs Bot-to-Bot Communication Mode (README, Several
        servers).
      '';
    };

    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/steward";
      description = "State folder: the database and the Matrix store.";
    };

    desiredStateDir = mkOption {
      type = types.str;
      default = "/etc/nixos/steward";
      description = ''
        Where root puts the desired state it admitted (`desired-state.json`): a folder of the
        configuration this system is built from, owned by root. The bot writes its proposal
        in its own state folder; the rebuild units run `steward admit` as root, which checks
        it and writes what passed here, so that a plain `nixos-rebuild switch` applies what
        root last admitted, as the bot's own rebuild does. The configuration reads the file as
        `services.steward.desiredStateFile = ./steward/desired-state.json;`. In a git flake
        the rebuild units add it (--intent-to-add) when it is new. The bot may not write here.
      '';
    };

    telegramTokenFile = secretOption "Telegram bot token";
    matrixPasswordFile = secretOption "Matrix password";
    matrixAccessTokenFile = secretOption "Matrix access token";
    hcloudTokenFile = secretOption "Hetzner Cloud API token";
    digitaloceanTokenFile = secretOption "DigitalOcean API token";
    scalewayAccessKeyFile = secretOption "Scaleway API access key";
    scalewaySecretKeyFile = secretOption "Scaleway API secret key";
    ovhApplicationKeyFile = secretOption "OVHcloud application key";
    ovhApplicationSecretFile = secretOption "OVHcloud application secret";
    ovhConsumerKeyFile = secretOption "OVHcloud consumer key";
    cloudflareTokenFile = secretOption "Cloudflare API token";
    rfc2136TsigFile = secretOption "TSIG key for RFC 2136 updates";
    b2KeyIdFile = secretOption "Backblaze B2 key id";
    b2KeyFile = secretOption "Backblaze B2 application key";
    resticPasswordFile = secretOption "restic repository password";
    resticRepositoryFile = secretOption "restic repository URL"; # rest: and sftp: URLs may hold a password
    resticEnvironmentFile = secretOption "restic backend keys"; # KEY=VALUE lines: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
    resticSshKeyFile = secretOption "ssh private key for an sftp: repository";
    resticKnownHostsFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/steward/backup-known-hosts";
      description = ''
        For an `sftp:` repository: a known-hosts file (`ssh-keyscan -p PORT HOST`, checked by
        hand) that names the backup server's key. ssh then trusts that key only
        (`StrictHostKeyChecking=yes`) and never asks. Not a secret: it may be in the store.
      '';
    };
    totpKeyFile = secretOption "key that seals the admins' TOTP secrets (openssl rand -base64 32)";

    allowRootKeysFromChat = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Let admins add root ssh keys from chat (`/sshkey add`). Off, the rebuild units refuse a
        desired state that names any. On, each key added from chat must carry a TOTP code for
        `rootKeyTotpFile`, which only the rebuild units read: a compromised bot cannot add a
        key without an admin's authenticator.
      '';
    };
    rootKeyTotpFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/steward/root-key-totp";
      description = ''
        File holding the base32 TOTP secret that root keys added from chat are checked
        against (enrol it in the admins' authenticators as "Steward root keys"). Root only;
        it reaches the rebuild units as their own credential and never the bot.
      '';
    };

    postgresql.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Dump the catalogue's PostgreSQL databases (`services.<id>.databases`) into each backup
        and load them back on a restore. The root backup units connect as `postgres` through
        the local socket; this adds a peer map from root to postgres to
        `services.postgresql`.
      '';
    };

    services = mkOption {
      type = types.attrsOf serviceType;
      default = { };
      example = {
        vaultwarden = {
          name = "Vaultwarden";
          units = [ "vaultwarden.service" ];
          folders = [ "/var/lib/vaultwarden" ];
          backup = "restic";
        };
      };
      description = ''
        The service catalogue, by id (`[a-z0-9][a-z0-9_-]*`). It is written to
        `${catalogueFile}`, and the bot may start, stop and restart exactly these units.
      '';
    };

    certificateGroup = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "acme";
      description = ''
        The group that may read the ACME certificates (`security.acme.defaults.group`, `acme`
        by default), so that reports and alerts can say when one expires. Read access only.
      '';
    };

    hardware = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Watch this machine's own hardware (with `settings.server_provider = "none"`): disk
          health from smartctl, mdadm arrays, btrfs device errors and, with `hardware.zfs`,
          ZFS pools. A root unit, `steward-health`, records what needs root on a timer.
        '';
      };
      zfs = mkOption {
        type = types.bool;
        default = false;
        description = "Also record `zpool status -x` (this machine has ZFS pools).";
      };
      interval = mkOption {
        type = types.str;
        default = "10min";
        description = "How often `steward-health` reads the disks (a systemd time span).";
      };
    };

    upgrade = {
      method = mkOption {
        type = types.enum [
          "channel"
          "flake"
        ];
        default = "channel";
        description = ''
          How `steward-upgrade` upgrades: `channel` runs `nixos-rebuild switch --upgrade`;
          `flake` runs `nix flake update` in `upgrade.flake`, then switches to it.
        '';
      };
      flake = mkOption {
        type = types.str;
        default = "/etc/nixos";
        description = ''
          With `method = "flake"`: the local flake folder the system is built from
          (rebuild and upgrade both use it; its lock file is updated in place).
        '';
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all (key: !(cfg.settings ? ${key})) secretSettings;
        message = "services.steward.settings must not hold secrets (${lib.concatStringsSep ", " secretSettings}): they would be copied into the Nix store. Use the *File options.";
      }
      {
        assertion = lib.all (key: !(cfg.settings ? ${key})) ownSettings;
        message = "services.steward.settings: state_dir, catalogue, desired_state, name and watch are set by the module (stateDir, services, name, watch).";
      }
      {
        assertion = cfg.watch == null || cfg.watch != cfg.name;
        message = "services.steward.watch: ${toString cfg.watch} is this Steward's own name; name another one.";
      }
      {
        assertion = lib.all (option: !(lib.hasPrefix "${builtins.storeDir}/" (toString cfg.${option}))) (
          lib.attrNames (builtins.removeAttrs givenSecrets [ "resticKnownHostsFile" ])
        );
        message = "services.steward: a secret file is in the Nix store, where anybody can read it.";
      }
      {
        assertion = lib.all (id: builtins.match "[a-z0-9][a-z0-9_-]{0,63}" id != null) (
          lib.attrNames cfg.services
        );
        message = "services.steward.services: ids must match [a-z0-9][a-z0-9_-]{0,63}.";
      }
      {
        assertion = !(cfg.services ? steward);
        message = "services.steward.services: `steward` is the id of Steward's own snapshot; name the service otherwise.";
      }
      {
        assertion = lib.all (service: service.units != [ ]) (lib.attrValues cfg.services);
        message = "services.steward.services: every service needs at least one unit.";
      }
      {
        assertion = !cfg.allowRootKeysFromChat || cfg.rootKeyTotpFile != null;
        message = "services.steward.allowRootKeysFromChat needs rootKeyTotpFile: root checks each key's code against it.";
      }
      {
        assertion =
          cfg.rootKeyTotpFile == null
          || !(lib.hasPrefix "${builtins.storeDir}/" (toString cfg.rootKeyTotpFile));
        message = "services.steward.rootKeyTotpFile is in the Nix store, where anybody can read it.";
      }
      {
        assertion = lib.all (unit: !(builtins.elem unit (sharedUnits ++ commonlyShared))) (
          lib.concatMap (service: service.units) (lib.attrValues cfg.services)
        );
        message = "services.steward.services: a shared unit (${lib.concatStringsSep ", " commonlyShared}, or one listed in sharedUnits) is in a service's units; list it in its sharedUnits, so that stopping the service leaves the others running.";
      }
    ];

    users.users.steward = {
      isSystemUser = true;
      group = "steward";
      # To read the journal of the units it follows.
      extraGroups = [ "systemd-journal" ] ++ lib.optional (cfg.certificateGroup != null) cfg.certificateGroup;
      home = cfg.stateDir;
      description = "Steward chat bot";
    };
    users.groups.steward = { };

    environment.etc."steward/catalogue.json".text = builtins.toJSON catalogue;
    # `steward console`, `steward doctor` … for root on the server, as the bot.
    environment.systemPackages = [ wrapper ];

    security.polkit.enable = true;
    security.polkit.extraConfig = polkitRule;

    systemd.tmpfiles.rules =
      lib.optional (cfg.stateDir != "/var/lib/steward") "d ${cfg.stateDir} 0700 steward steward - -"
      # Root writes the admitted copy here and the configuration reads it; the bot may not
      # write it (steward admit refuses a folder others can write). `d` also takes back a
      # folder an earlier version gave the bot.
      ++ [ "d ${cfg.desiredStateDir} 0755 root root - -" ];

    systemd.services.steward = {
      description = "Steward chat bot";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # systemctl, journalctl and nixos-rebuild are found on PATH.
      path = botPath;
      environment = unitEnvironment;
      serviceConfig = {
        # Migrations run here, in a process of their own: Alembic never enters the bot.
        ExecStartPre = "${cfg.package}/bin/steward db upgrade";
        ExecStart = "${cfg.package}/bin/steward run";
        User = "steward";
        Group = "steward";
        WorkingDirectory = cfg.stateDir;
        Restart = "on-failure";
        RestartSec = "10s";
        LoadCredential = credentials;

        UMask = "0027";
        ReadWritePaths = [ cfg.stateDir ];
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateDevices = true;
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
        RestrictNamespaces = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
      }
      // commonHardening
      // lib.optionalAttrs (cfg.stateDir == "/var/lib/steward") {
        StateDirectory = "steward";
        StateDirectoryMode = "0700";
      };
    };

    systemd.services.steward-rebuild = evaluatingUnit "Steward: nixos-rebuild switch" (
      switchCommand [ ]
    );
    systemd.services.steward-upgrade = evaluatingUnit "Steward: upgrade and switch" (
      if cfg.upgrade.method == "flake" then
        ''
          cd ${lib.escapeShellArg cfg.upgrade.flake}
          nix --extra-experimental-features 'nix-command flakes' flake update
          ${switchCommand [ ]}
        ''
      else
        switchCommand [ "--upgrade" ]
    );
    systemd.services."steward-backup@" = dataJob "backup" "Steward: back up %i";
    systemd.services."steward-restore@" = dataJob "restore" "Steward: restore %i";
    # For an admin on a root shell only (polkit does not grant it to the bot): restores a
    # snapshot no backup unit of this server took, which steward-restore@ refuses.
    systemd.services."steward-restore-foreign@" =
      dataJob "restore --foreign" "Steward: restore %i, taken elsewhere";

    services.postgresql = lib.mkIf (cfg.postgresql.enable || botOnLocalPostgres) {
      # The bot's own database on this server's PostgreSQL, through the socket: root (Steward's
      # own snapshot, `steward recover`) logs in as the bot's role `steward`, as the bot does.
      # Dumps of the services are taken as postgres; they are loaded as the service's own role,
      # so that SQL in a dump runs with no more than the service's rights (no COPY … FROM
      # PROGRAM).
      identMap = lib.mkBefore (
        (
          if botOnLocalPostgres then
            ''
              steward-bot root steward
              steward-bot steward steward
            ''
          else
            ""
        )
        + (
          if cfg.postgresql.enable then
            ''
              steward-dumps root postgres
              steward-dumps postgres postgres
            ''
            + lib.concatStringsSep "" (map (role: "steward-dumps root ${role}\n") databaseRoles)
          else
            ""
        )
      );
      authentication = lib.mkBefore (
        (if botOnLocalPostgres then "local all steward peer map=steward-bot\n" else "")
        + (
          if cfg.postgresql.enable then
            ''
              local all postgres peer map=steward-dumps
            ''
            + lib.concatStringsSep "" (
              map (role: "local ${role} ${role} peer map=steward-dumps\n") databaseRoles
            )
          else
            ""
        )
      );
    };

    # /resize: grow the filesystem of a cloud volume to the volume's new size.
    systemd.services."steward-growfs@" = {
      # %f, not %I: the instance is a path escaped without its leading "/", which %I does not
      # give back (it passed "dev/disk/…", and the script refused every volume).
      description = "Steward: grow the filesystem on %f";
      serviceConfig.Type = "oneshot";
      scriptArgs = "%f";
      path = [
        pkgs.util-linux
        pkgs.e2fsprogs
        pkgs.xfsprogs
      ];
      script = ''
        device="$1"
        case "$device" in
          /dev/disk/by-id/scsi-0HC_Volume_[0-9]*) ;;
          *) echo "error: not a cloud volume: $device" >&2; exit 2 ;;
        esac
        # || true: findmnt fails when nothing is mounted from the device, and the unit script
        # runs under `set -e`, which ended it without a word; the message below says why.
        fstype=$(findmnt --noheadings --first-only --output FSTYPE --source "$device" || true)
        target=$(findmnt --noheadings --first-only --output TARGET --source "$device" || true)
        case "$fstype" in
          ext2 | ext3 | ext4) resize2fs "$device" ;;
          xfs) xfs_growfs "$target" ;;
          *) echo "error: cannot grow a '$fstype' filesystem on $device" >&2; exit 1 ;;
        esac
      '';
    };

    systemd.services.steward-health = lib.mkIf cfg.hardware.enable {
      description = "Steward: record disk and pool health";
      path = [
        pkgs.smartmontools
        pkgs.jq
        pkgs.gawk
        pkgs.coreutils
        pkgs.btrfs-progs
        config.systemd.package
      ]
      ++ lib.optional cfg.hardware.zfs pkgs.zfs;
      script = healthScript;
      serviceConfig = {
        Type = "oneshot";
        StateDirectory = "steward-health";
        StateDirectoryMode = "0755"; # the bot reads it; only root writes
        UMask = "0022";
        CapabilityBoundingSet = [
          "CAP_SYS_RAWIO"
          "CAP_SYS_ADMIN"
        ];
        # Read-only access to the disks (smartctl opens them O_RDONLY) and nothing else in /dev.
        DevicePolicy = "closed";
        DeviceAllow = [
          "block-sd r"
          "block-blkext r"
          "char-nvme r"
        ]
        ++ lib.optional cfg.hardware.zfs "/dev/zfs rw";
        PrivateNetwork = true;
        RestrictAddressFamilies = [ "AF_UNIX" ];
        ProtectSystem = "strict";
        ProtectHome = true;
        SystemCallArchitectures = "native";
      }
      // commonHardening;
    };
    systemd.timers.steward-health = lib.mkIf cfg.hardware.enable {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "2min";
        OnUnitActiveSec = cfg.hardware.interval;
      };
    };

    # A template: the instance is the generation. The bot validates the number; so does this.
    systemd.services."steward-rollback@" =
      rebuildUnit "Steward: switch to generation %i" ''
        generation="$1"
        case "$generation" in
          "" | *[!0-9]*) echo "error: not a generation number: $generation" >&2; exit 2 ;;
        esac
        profile=/nix/var/nix/profiles/system
        if [ ! -e "$profile-$generation-link" ]; then
          echo "error: generation $generation does not exist" >&2
          exit 1
        fi
        echo "switching profile to generation $generation"
        nix-env --profile "$profile" --switch-generation "$generation"
        "$profile/bin/switch-to-configuration" switch
      ''
      // {
        scriptArgs = "%i";
      };
  };
}
