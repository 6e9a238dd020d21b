# A stand-in for nixpkgs with no packages in it, so that `nix flake show` can list the root
# flake's outputs offline:
#   nix flake show --override-input nixpkgs path:./tests/nixos/stub-nixpkgs
# Its derivations are names only; nothing here can be built.
{
  outputs =
    { self }:
    let
      lib = {
        genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
      };
      stub = system: name: derivation {
        inherit name system;
        builder = "/bin/false";
      };
      packagesFor = system: {
        stdenv.hostPlatform.system = system;
        callPackage = _file: _args: stub system "steward-0.1.0";
        testers.runNixOSTest = test: stub system "vm-test-run-${test.name}";
      };
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] packagesFor;
    };
}
