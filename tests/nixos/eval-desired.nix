# Evaluates nixos/desired-state.nix with the stub lib: `file` is services.steward.desiredStateFile
# (root's admitted copy as a path, or null), `services` the catalogue's services as a user writes them.
{
  file ? null,
  services ? { },
}:
let
  lib = import ./stub-lib.nix;
  module = import ../../nixos/desired-state.nix;
  config.services.steward = {
    enable = true;
    desiredStateFile = file;
    services = lib.mapAttrs (_: service: { alreadyRunning = false; } // service) services;
  };
  evaluated = module { inherit config lib; };
in
{
  desired = evaluated.options.services.steward.desired.default;
  config = lib.resolve evaluated.config;
}
