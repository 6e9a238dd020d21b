{
  description = "Steward: run a self-hosted NixOS server from a Telegram or Matrix chat";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  # This flake lives in nixos/ of the repository; in a git checkout `nix build ./nixos` copies
  # the whole repository, so package.nix can reach ../bot and the rest.
  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # The bot alone; desiredState adds what the owners choose from chat (it reads a file
      # outside the flake, so builds need --impure, as the rebuild units pass).
      nixosModules.desiredState = ./desired-state.nix;
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./module.nix ];
          services.steward.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./package.nix { };
      });

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        vm = import ./tests/vm.nix {
          inherit pkgs;
          stewardModule = self.nixosModules.default;
        };
      });
    };
}
