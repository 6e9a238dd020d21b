# A NixOS VM with Synapse and Steward. A matrix-nio script registers alice (an admin in
# Steward's settings), invites the bot, sends `!status` and waits for the answer. Then the polkit
# rule is checked from the bot's user: catalogue units yes, anything else no.
# Run with `nix flake check` or `nix build .#checks.x86_64-linux.vm` from the repository root.
{
  pkgs,
  stewardModule ? {
    imports = [
      ../module.nix
      ../desired-state.nix
    ];
  },
}:
let
  serverName = "steward.test";
  homeserver = "http://127.0.0.1:8008";
  sharedSecret = "vm-test-registration-secret";

  client = pkgs.writers.writePython3 "steward-status-check" {
    libraries = [ pkgs.python3Packages.matrix-nio ];
    flakeIgnore = [ "E501" ];
  } ''
    import asyncio
    import sys
    import time

    from nio import AsyncClient, RoomCreateResponse, RegisterResponse

    BOT = "@steward:${serverName}"


    async def main() -> int:
        client = AsyncClient("${homeserver}", "alice")
        registered = await client.register("alice", "alice-password")
        if not isinstance(registered, RegisterResponse):
            print("register failed:", registered)
            return 1
        room = await client.room_create(name="steward", invite=[BOT])
        if not isinstance(room, RoomCreateResponse):
            print("room_create failed:", room)
            return 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            members = await client.joined_members(room.room_id)
            if BOT in [member.user_id for member in getattr(members, "members", [])]:
                break
            await asyncio.sleep(1)
        else:
            print("the bot never joined")
            return 1
        sync = await client.sync(timeout=0)
        await client.room_send(
            room.room_id, "m.room.message", {"msgtype": "m.text", "body": "!status"}
        )
        since = sync.next_batch
        while time.monotonic() < deadline:
            sync = await client.sync(timeout=5000, since=since)
            since = sync.next_batch
            joined = sync.rooms.join.get(room.room_id)
            for event in joined.timeline.events if joined else []:
                body = getattr(event, "body", "")
                if event.sender == BOT and "load" in body:
                    print(body)
                    await client.close()
                    return 0
        print("no answer to !status")
        await client.close()
        return 1


    sys.exit(asyncio.run(main()))
  '';
in
pkgs.testers.runNixOSTest {
  name = "steward";

  nodes.server =
    { lib, ... }:
    {
      imports = [ stewardModule ];
      virtualisation.memorySize = 2048;
      # Not written yet: the VM starts from what the catalogue says already runs.
      services.steward.desiredStateFile = ./desired-state.json;

      services.matrix-synapse = {
        enable = true;
        settings = {
          server_name = serverName;
          database.name = "sqlite3";
          registration_shared_secret = sharedSecret;
          enable_registration = true;
          enable_registration_without_verification = true;
          listeners = [
            {
              port = 8008;
              bind_addresses = [ "127.0.0.1" ];
              type = "http";
              tls = false;
              x_forwarded = false;
              resources = [
                {
                  names = [ "client" ];
                  compress = false;
                }
              ];
            }
          ];
          rc_message = {
            per_second = 100;
            burst_count = 100;
          };
          rc_registration = {
            per_second = 100;
            burst_count = 100;
          };
          rc_login.address = {
            per_second = 100;
            burst_count = 100;
          };
        };
      };

      # Test-only: this password is in the store. Real secrets live outside it.
      environment.etc."steward-test/matrix-password".text = "steward-password";
      # A unit outside the catalogue, which the bot must not be able to start.
      systemd.services.not-in-catalogue.serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";

      services.steward = {
        enable = true;
        settings = {
          admins = [ "@alice:${serverName}" ];
          matrix_homeserver = homeserver;
          matrix_user = "@steward:${serverName}";
        };
        matrixPasswordFile = "/etc/steward-test/matrix-password";
        services.synapse = {
          name = "Synapse";
          description = "Matrix homeserver";
          units = [ "matrix-synapse.service" ];
        };
      };
      # Started by the test script once its Matrix account exists.
      systemd.services.steward.wantedBy = lib.mkForce [ ];
    };

  testScript =
    { nodes, ... }:
    let
      synapse = nodes.server.services.matrix-synapse.package;
    in
    ''
      server.wait_for_unit("matrix-synapse.service")
      server.wait_for_open_port(8008)
      server.succeed(
          "${synapse}/bin/register_new_matrix_user --no-admin -u steward -p steward-password "
          "-k ${sharedSecret} ${homeserver}"
      )
      server.succeed("systemctl start steward.service")
      server.wait_for_unit("steward.service")

      with subtest("the bot answers !status in a room an admin invited it to"):
          print(server.succeed("${client}"))

      with subtest("the catalogue is where the bot reads it"):
          server.succeed("grep -q matrix-synapse.service /etc/steward/catalogue.json")

      with subtest("polkit: the bot may restart catalogue units and nothing else"):
          as_steward = "runuser -u steward -- systemctl --no-ask-password "
          server.succeed(as_steward + "restart matrix-synapse.service")
          server.wait_for_unit("matrix-synapse.service")
          server.fail(as_steward + "start not-in-catalogue.service")
          server.fail(as_steward + "stop steward-rebuild.service")
          server.fail(as_steward + "reload matrix-synapse.service")

      with subtest("secrets arrive as credentials, not in the environment"):
          pid = server.succeed("systemctl show -P MainPID steward.service").strip()
          environ = server.succeed(f"tr '\\0' '\\n' < /proc/{pid}/environ")
          assert "STEWARD_MATRIX_PASSWORD_FILE=/run/credentials/steward.service/matrix-password" in environ, environ
          assert "steward-password" not in environ
    '';
}
