# Evaluates nixos/module.nix without nixpkgs: the stub lib and pkgs, a stub system config, and
# `steward` as what a user writes under services.steward. Returns the resolved config.
{
  steward,
  # The extras the package is built with, instead of the config.
  extras ? false,
}:
let
  lib = import ./stub-lib.nix;
  pkgs = import ./stub-pkgs.nix;
  module = import ../../nixos/module.nix;

  config = {
    services.steward = cfg;
    nix = {
      envVars = { };
      package = pkgs.nix;
    };
    environment.sessionVariables.NIX_PATH = "nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos";
    networking.proxy.envVars = { };
    system.build.nixos-rebuild = pkgs.nixos-rebuild;
    systemd.package = pkgs.systemd;
    services.postgresql.package = pkgs.postgresql;
  };
  evaluated = module { inherit config lib pkgs; };
  cfg = lib.evalOptions "services.steward" evaluated.options.services.steward steward;
in
if extras then cfg.extras else lib.resolve evaluated.config
