{
  description = "keyfleet: a reproducible, self-hosted KeyDB multi-master fleet on NixOS";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # Only for a Rust toolchain, and only while nixos-25.11's rustc is older than the
    # rust-version Cargo.toml asks for (see toolchainFor below).
    nixpkgs-unstable.url = "github:NixOS/nixpkgs/nixos-unstable";
  };

  outputs =
    {
      self,
      nixpkgs,
      nixpkgs-unstable,
    }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      hostNames = [
        "node1"
        "node2"
        "node3"
      ];

      cargoToml = lib.importTOML ./Cargo.toml;

      # The Rust toolchain: nixpkgs' own when its rustc is new enough for Cargo.toml's
      # rust-version, else nixos-unstable's rustc, cargo, clippy and rustfmt. `static` is
      # the package set the keyfleet package itself is built in: pkgsStatic (musl, fully
      # static) of that same nixpkgs, so that rustc, the musl std it was built with, the
      # C compiler (ring, zstd-sys) and the linker all come from one nixpkgs. The glibc
      # rustPlatform stays for the clippy check; KeyDB, the dev shell and the hosts stay
      # on the release.
      toolchainFor =
        pkgs:
        let
          releaseIsEnough = lib.versionAtLeast pkgs.rustc.version (cargoToml.package.rust-version or "0");
          source =
            if releaseIsEnough then
              pkgs
            else
              nixpkgs-unstable.legacyPackages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          inherit (source)
            rustc
            cargo
            clippy
            rustfmt
            ;
          rustPlatform =
            if releaseIsEnough then
              pkgs.rustPlatform
            else
              pkgs.makeRustPlatform { inherit (source) rustc cargo; };
          static = source.pkgsStatic;
        };

      # Plain nixpkgs: the packages, checks and VM tests use this flake's packages through
      # self.packages, as a user's configuration does through nixosModules.default.
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      buildPackages = pkgs: rec {
        # A static musl binary: no ld.so and no shared libc mapped (idle RSS 5.2 -> 3.8 MiB,
        # measured with a rustup musl build of the same code: BENCHMARKS.md).
        # A cross build (build = *-linux-gnu, host = *-linux-musl) whose tests still run,
        # the build machine executing the static test binaries. What the tests start runs on
        # the build machine, so it is passed in as plain glibc packages of this nixpkgs
        # rather than taken from the static set.
        keyfleet = (toolchainFor pkgs).static.callPackage ./pkgs/keyfleet {
          inherit (pkgs) redis tzdata;
          inherit keydb;
        };
        keydb = pkgs.callPackage ./pkgs/keydb { };
      };

      mkHost =
        system: name:
        lib.nixosSystem {
          modules = [
            {
              nixpkgs.hostPlatform = system;
              # The fleet-wide release name of services.keyfleet.upgrades: one rollout
              # is one revision of this flake.
              system.configurationRevision = self.rev or self.dirtyRev or null;
            }
            self.nixosModules.default
            ./hosts/${name}.nix
          ];
        };
    in
    {
      # pkgs.keyfleet and pkgs.keydb, for whoever wants them in their own pkgs. The NixOS
      # module does not need it (and must not set nixpkgs.overlays: see nix/nixos-module.nix).
      overlays.default = final: _prev: buildPackages final;

      packages = forAllSystems (
        pkgs:
        let
          built = buildPackages pkgs;
        in
        built // { default = built.keyfleet; }
      );

      nixosModules = {
        keyfleet = import ./nix/nixos-module.nix self;
        default = self.nixosModules.keyfleet;
      };

      nixosConfigurations = lib.genAttrs hostNames (mkHost "x86_64-linux");

      checks = forAllSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          inherit (self.packages.${system}) keyfleet;
          hosts = lib.genAttrs hostNames (mkHost system);
          toolchain = toolchainFor pkgs;
          # The VM tests' nodes get the module as users do: plain nixpkgs (read-only
          # nixpkgs.* options, as runNixOSTest sets them) and nixosModules.default.
          vmTest =
            file:
            pkgs.testers.runNixOSTest {
              imports = [ file ];
              defaults.imports = [ self.nixosModules.default ];
            };
        in
        {
          # The package's own checkPhase runs `cargo test`.
          inherit keyfleet;
          clippy = pkgs.stdenv.mkDerivation {
            name = "keyfleet-clippy";
            inherit (keyfleet) src;
            # Vendored by the same nixpkgs as the cargoSetupHook below (keyfleet's own
            # cargoDeps may come from nixos-unstable's static set).
            cargoDeps = toolchain.rustPlatform.importCargoLock { lockFile = ./Cargo.lock; };
            nativeBuildInputs = [
              toolchain.rustPlatform.cargoSetupHook
              toolchain.cargo
              toolchain.rustc
              toolchain.clippy
            ];
            buildPhase = ''
              runHook preBuild
              cargo clippy --offline --all-targets -- -D warnings
              runHook postBuild
            '';
            installPhase = "touch $out";
          };
          multi-master = vmTest ./nixos-tests/multi-master.nix;
          monitoring = vmTest ./nixos-tests/monitoring.nix;
          logs = vmTest ./nixos-tests/logs.nix;
          backups = vmTest ./nixos-tests/backups.nix;
          upgrade = vmTest ./nixos-tests/upgrade.nix;
        }
        // lib.mapAttrs' (
          name: host: lib.nameValuePair "host-${name}" host.config.system.build.toplevel
        ) hosts
      );

      devShells = forAllSystems (
        pkgs:
        let
          toolchain = toolchainFor pkgs;
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) keydb;
        in
        {
          default = pkgs.mkShell {
            packages = [
              toolchain.rustc
              toolchain.cargo
              toolchain.clippy
              toolchain.rustfmt
              keydb
              pkgs.redis
              pkgs.prometheus
              # An S3 server for the logship and backup tests.
              pkgs.garage
              pkgs.nixfmt
              pkgs.deadnix
            ];
            KEYFLEET_KEYDB_SERVER = lib.getExe' keydb keydb.serverBin;
          };
        }
      );

      apps = forAllSystems (
        pkgs:
        let
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) keyfleet keydb;
        in
        {
          dev = {
            type = "app";
            program = lib.getExe (
              pkgs.writeShellApplication {
                name = "keyfleet-dev";
                runtimeEnv.KEYFLEET_KEYDB_SERVER = lib.getExe' keydb keydb.serverBin;
                text = ''exec ${lib.getExe keyfleet} dev "$@"'';
              }
            );
          };
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
