{
  description = "Steward: run a self-hosted NixOS server from a Telegram or Matrix chat";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

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
      # The bot, its root units and the desired state chosen from chat, in one import:
      #   imports = [ steward.nixosModules.default ];
      #   services.steward.desiredStateFile = ./steward/desired-state.json;
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [
            ./nixos/module.nix
            ./nixos/desired-state.nix
          ];
          services.steward.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      nixosModules.steward = self.nixosModules.default;

      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nixos/package.nix { };
      });

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        vm = import ./nixos/tests/vm.nix {
          inherit pkgs;
          stewardModule = self.nixosModules.default;
        };
      });
    };
}
