# Evaluates nixos/desired-state.nix with the stub lib, for the file root admitted.
{ admittedStateFile }:
let
  lib = import ./stub-lib.nix;
  module = import ../../nixos/desired-state.nix;
  config.services.steward = {
    enable = true;
    inherit admittedStateFile;
  };
  evaluated = module { inherit config lib; };
in
{
  desired = evaluated.options.services.steward.desired.default;
  config = lib.resolve evaluated.config;
}
