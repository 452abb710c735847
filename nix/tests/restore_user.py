"""The restore ACL user as nix/eval-modules.nix renders it (check-eval.py's part on it):
its name and credential in the daemon's TOML, its password by LoadCredential= to both
units, and the engine's secrets script creating it with exactly src/engine/restore.acl's
rules."""

import shlex


def credential_sources(unit):
    """name -> the files a unit's LoadCredential= entries of that name read."""
    sources = {}
    for entry in unit["serviceConfig"].get("LoadCredential", []):
        name, source = entry.split(":", 1)
        sources.setdefault(name, []).append(source)
    return sources


# The restore user's password: a credential of the daemon (named in the TOML) and of the
# engine (whose secrets script creates the user with the rules of src/engine/restore.acl).
RESTORE_CREDENTIAL = "backups-restore-password"
ENGINE_RESTORE_CREDENTIAL = "restore-password"
DENIED = ["-@scripting", "-@hyperloglog"]
with open("src/engine/restore.acl") as f:
    RESTORE_RULES = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]


def secrets_users(node):
    """name -> (credential, source, rules) of every --user of the engine's secrets script."""
    line = next(l for l in node["secretsScript"].splitlines() if l.startswith("set -- "))
    args = shlex.split(line)[2:]
    users = {}
    while args:
        if args[0] == "--user":
            users[args[1]] = (args[2], args[3], args[4])
            args = args[5:]
        elif args[0] == "--masterauth":
            args = args[4:]
        else:
            args = args[1:]
    return users


def check_restore_user(node):
    """With backups: the restore user in the TOML (its name and credential name), its
    password by LoadCredential= to the daemon and to the engine from one file outside the
    store, and the engine's secrets script creating it with exactly restore.acl's rules;
    or none of it. A list of what is wrong, and what is right."""
    backups = node["settings"]["backups"]
    daemon = credential_sources(node["keyfleetService"]).get(RESTORE_CREDENTIAL, [])
    engine = credential_sources(node["keydbService"]).get(ENGINE_RESTORE_CREDENTIAL, [])
    users = {n: u for n, u in secrets_users(node).items() if u[0] == ENGINE_RESTORE_CREDENTIAL}
    if "restore_user" not in backups and "restore_password_file" not in backups:
        if daemon or engine or users:
            return [f"no restore user in the TOML, but credentials {daemon} {engine}, users {sorted(users)}"], ""
        return [], ""
    user = backups.get("restore_user")
    wrong = []
    if backups.get("restore_password_file") != RESTORE_CREDENTIAL:
        wrong.append(f"backups.restore_password_file = {backups.get('restore_password_file')!r}, not {RESTORE_CREDENTIAL!r}")
    if len(daemon) != 1 or not daemon[0].startswith("/") or daemon[0].startswith("/nix/store") or engine != daemon:
        wrong.append(f"the restore password: daemon LoadCredential {daemon}, engine LoadCredential {engine}")
    expected = (ENGINE_RESTORE_CREDENTIAL, daemon[0] if daemon else None, " ".join(RESTORE_RULES + DENIED))
    if list(users) != [user] or users[user] != expected:
        wrong.append(f"the secrets script's restore user: {users}, expected {user!r}: {expected}")
    return wrong, f"; restore user {user} ({' '.join(RESTORE_RULES)}) by LoadCredential= to both units"
