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
      # rust-version, else nixos-unstable's rustc, cargo, clippy and rustfmt (the rest of
      # the build, glibc included, stays on the release).
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
        };

      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
        };

      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));

      mkHost =
        system: name:
        lib.nixosSystem {
          modules = [
            { nixpkgs.hostPlatform = system; }
            self.nixosModules.default
            ./hosts/${name}.nix
          ];
        };
    in
    {
      overlays.default = final: _prev: {
        keyfleet = final.callPackage ./pkgs/keyfleet { inherit (toolchainFor final) rustPlatform; };
        keydb = final.callPackage ./pkgs/keydb { };
      };

      packages = forAllSystems (pkgs: {
        inherit (pkgs) keyfleet keydb;
        default = pkgs.keyfleet;
      });

      nixosModules = {
        keyfleet = {
          imports = [ ./modules ];
          nixpkgs.overlays = [ self.overlays.default ];
        };
        default = self.nixosModules.keyfleet;
      };

      nixosConfigurations = lib.genAttrs hostNames (mkHost "x86_64-linux");

      checks = forAllSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          hosts = lib.genAttrs hostNames (mkHost system);
          toolchain = toolchainFor pkgs;
        in
        {
          # The package's own checkPhase runs `cargo test`.
          inherit (pkgs) keyfleet;
          clippy = pkgs.stdenv.mkDerivation {
            name = "keyfleet-clippy";
            inherit (pkgs.keyfleet) src cargoDeps;
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
          multi-master = pkgs.testers.runNixOSTest ./nixos-tests/multi-master.nix;
          monitoring = pkgs.testers.runNixOSTest ./nixos-tests/monitoring.nix;
        }
        // lib.mapAttrs' (
          name: host: lib.nameValuePair "host-${name}" host.config.system.build.toplevel
        ) hosts
      );

      devShells = forAllSystems (
        pkgs:
        let
          toolchain = toolchainFor pkgs;
        in
        {
          default = pkgs.mkShell {
            packages = [
              toolchain.rustc
              toolchain.cargo
              toolchain.clippy
              toolchain.rustfmt
              pkgs.keydb
              pkgs.redis
              pkgs.prometheus
              # An S3 server for the logship and backup tests.
              pkgs.garage
              pkgs.nixfmt
              pkgs.deadnix
            ];
            KEYFLEET_KEYDB_SERVER = lib.getExe' pkgs.keydb pkgs.keydb.serverBin;
          };
        }
      );

      apps = forAllSystems (pkgs: {
        dev = {
          type = "app";
          program = lib.getExe (
            pkgs.writeShellApplication {
              name = "keyfleet-dev";
              runtimeEnv.KEYFLEET_KEYDB_SERVER = lib.getExe' pkgs.keydb pkgs.keydb.serverBin;
              text = ''exec ${lib.getExe pkgs.keyfleet} dev "$@"'';
            }
          );
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
