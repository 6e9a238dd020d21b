# Evaluates nixos/desired-state.nix with the stub lib, for a state folder the test fills.
{ stateDir }:
let
  lib = import ./stub-lib.nix;
  module = import ../../nixos/desired-state.nix;
  config.services.steward = {
    enable = true;
    inherit stateDir;
  };
  evaluated = module { inherit config lib; };
in
{
  desired = evaluated.options.services.steward.desired.default;
  config = lib.resolve evaluated.config;
}
