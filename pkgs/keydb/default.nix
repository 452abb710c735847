# KeyDB 6.3.4, the last release of Snapchat/KeyDB, built the way nixpkgs built it until
# the package was removed (November 2025): the vendored Lua, hiredis and jemalloc (KeyDB
# links deps/jemalloc statically; a system jemalloc is not used), TLS,
# and systemd notification support (the engine service is Type=notify).
#
# KeyDB 6.3.4 forked Redis 6.2 and received none of the Redis 6.2 security releases that
# came after it. The fixed Redis releases and what keyfleet's NixOS modules do about each
# (modules/keydb.nix writes the ACL rules and the firewall rules named here):
#
# - CVE-2023-45145 (fixed in Redis 6.2.14): the unix socket is chmod-ed after listen(2),
#   so another local user may connect in between. The socket lives in /run/keydb, a
#   directory of mode 0750 owned by keydb, and the service runs with UMask=0077, so no
#   other user can reach it at any moment.
# - CVE-2024-31449 (6.2.16): stack overflow in the Lua `bit` library, potential RCE.
# - CVE-2024-46981 (6.2.17): Lua garbage collector use-after-free through SCRIPT FLUSH,
#   potential RCE.
# - CVE-2025-49844 "RediShell" (6.2.20): use-after-free in the Lua parser, RCE.
# - CVE-2025-46817 (6.2.20): integer overflow in Lua `unpack`, potential RCE.
# - CVE-2025-46818 (6.2.20): a Lua script runs in the context of another user.
# - CVE-2025-46819 (6.2.20): out-of-bounds read in the Lua lexer.
#   All six need a client that may run Lua: every ACL user the module writes has
#   `-@scripting` (EVAL, EVALSHA, SCRIPT), and the `default` user is switched off.
# - CVE-2024-31228 (6.2.16): unbounded glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE) hang
#   the server. Only authenticated users can send them; the module's default rules drop
#   `@dangerous` (KEYS among them). SCAN MATCH stays available to whom the operator
#   grants it: not mitigated beyond authentication.
# - CVE-2025-32023 (6.2.19): out-of-bounds write in HyperLogLog commands. The module's
#   default rules drop `@hyperloglog`.
# - CVE-2025-21605 (6.2.18): an unauthenticated client grows its output buffer without
#   bound (NOAUTH replies it never reads). The engine port is open in the firewall only
#   to the peers' addresses, the engine binds the addresses the host declares (loopback
#   by default), and protected mode stays on; a peer host itself can still do it.
# - CVE-2025-48367 (6.2.19): an accept(2) error on one connection stops accepting others
#   for a while (DoS). Only the peers can connect (firewall), as above.
#
# They are not put in meta.knownVulnerabilities: that marks the package insecure and
# stops every evaluation that does not permit it, while the mitigations above are how
# this project answers them.
{
  lib,
  stdenv,
  fetchFromGitHub,
  pkg-config,
  curl,
  libuuid,
  openssl,
  systemd,
  zlib,
}:

stdenv.mkDerivation (finalAttrs: {
  pname = "keydb";
  version = "6.3.4";

  # fetchFromGitHub unpacks GitHub's tag tarball: no submodules (deps/rocksdb, only
  # needed for the FLASH storage provider, stays an empty directory).
  src = fetchFromGitHub {
    owner = "Snapchat";
    repo = "KeyDB";
    rev = "v${finalAttrs.version}";
    hash = "sha256-j6qgK6P3Fv+b6k9jwKQ5zW7XLkKbXXcmHKBCQYvwEIU=";
  };

  # The vendored Makefiles call `ar` and `as` by bare name; use the toolchain's.
  postPatch = ''
    substituteInPlace deps/lua/src/Makefile \
      --replace-fail "ar rcu" "${stdenv.cc.targetPrefix}ar rcu"
    substituteInPlace src/Makefile \
      --replace-fail "as --64 -g" "${stdenv.cc.targetPrefix}as --64 -g"
  '';

  nativeBuildInputs = [ pkg-config ];
  # What src/Makefile links: -lz -lcrypto (always), -lcurl and -luuid (Linux),
  # libsystemd (USE_SYSTEMD), libssl (BUILD_TLS); -latomic comes with the compiler. zlib
  # and openssl are named here, not left to curl's propagated inputs.
  buildInputs = [
    curl
    libuuid
    openssl
    systemd
    zlib
  ];

  makeFlags = [
    "PREFIX=${placeholder "out"}"
    "AR=${stdenv.cc.targetPrefix}ar"
    "RANLIB=${stdenv.cc.targetPrefix}ranlib"
    "BUILD_TLS=yes"
    "USE_SYSTEMD=yes"
    # The hand-written spinlock (src/fastlock_x64.asm) exists for x86_64 only.
    "USEASM=${lib.boolToString stdenv.hostPlatform.isx86_64}"
  ]
  ++ lib.optional (!stdenv.hostPlatform.isx86_64) "MALLOC=libc";

  enableParallelBuilding = true;

  # Upstream's Tcl suite needs an hour and is timing-sensitive on busy builders; the
  # keyfleet integration tests and the NixOS tests exercise the engine instead.
  doCheck = false;

  passthru.serverBin = "keydb-server";

  meta = {
    description = "Multithreaded fork of Redis with active-replica multi-master replication";
    homepage = "https://github.com/Snapchat/KeyDB";
    changelog = "https://github.com/Snapchat/KeyDB/raw/v${finalAttrs.version}/00-RELEASENOTES";
    license = lib.licenses.bsd3;
    platforms = lib.platforms.linux;
    mainProgram = "keydb-cli";
  };
})
