# Test-only secrets for the VM tests' nodes: plain values written to
# /etc/keyfleet-test/NAME at activation. environment.etc with a mode copies the file
# instead of linking it into the store, and the options get a path outside the store, as
# they demand (a store path is refused: it is world-readable). The values themselves do
# pass through the store here, which is fine for a test and never done on a real host,
# where sops-nix or agenix decrypt them to /run/secrets.
secrets: {
  environment.etc = builtins.listToAttrs (
    map (name: {
      name = "keyfleet-test/${name}";
      value = {
        text = secrets.${name};
        mode = "0400";
      };
    }) (builtins.attrNames secrets)
  );
}
