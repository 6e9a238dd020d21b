# Steward from this repository, built with hatchling from ../pyproject.toml.
{
  lib,
  python3Packages,
  # pyproject.toml's optional parts; the NixOS module passes what its settings need.
  extras ? [
    "matrix"
    "matrix-e2ee"
    "hetzner"
    "digitalocean"
    "scaleway"
    "ovh"
    "cloudflare"
    "b2"
    "postgres"
  ],
}:
let
  # Each extra of pyproject.toml, as nixpkgs' Python packages.
  optional = with python3Packages; {
    matrix = [ matrix-nio ];
    matrix-e2ee = [ matrix-nio ] ++ matrix-nio.optional-dependencies.e2e;
    hetzner = [ hcloud ];
    digitalocean = [ pydo ];
    scaleway = [ scaleway ];
    ovh = [ ovh ];
    cloudflare = [ cloudflare ];
    b2 = [ b2sdk ];
    postgres = [ psycopg ];
  };
in
python3Packages.buildPythonApplication {
  pname = "steward";
  version = "0.1.0";
  pyproject = true;

  # Only what the wheel is built from (hatchling reads README.md: it is the package's readme).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../bot
      ../handlers
      ../providers
      ../values
    ];
  };

  build-system = [ python3Packages.hatchling ];

  dependencies =
    with python3Packages;
    [
      sqlalchemy
      alembic
      psutil
      python-telegram-bot
      aiolimiter # python-telegram-bot[rate-limiter]
      sniffio
      apscheduler
      pyotp # the admins' second factor
      segno # its enrolment QR code, in the terminal
      pycryptodome # seals the TOTP secrets (AES-GCM)
      pillow # the weekly chart, drawn in a subprocess
      dnspython
    ]
    ++ lib.concatMap (extra: optional.${extra}) extras;

  # pyproject.toml pins the versions CI tests on PyPI; nixpkgs moves on its own schedule.
  pythonRelaxDeps = true;

  # The suite needs Synapse, PostgreSQL, restic and more: it runs in CI, and the VM test
  # (tests/vm.nix) runs the packaged bot.
  doCheck = false;
  pythonImportsCheck = [
    "bot.cli"
    "handlers"
    "providers"
    "values"
  ];

  meta = {
    description = "Run a self-hosted NixOS server from a Telegram or Matrix chat";
    license = lib.licenses.agpl3Plus;
    mainProgram = "steward";
    platforms = lib.platforms.linux;
  };
}
