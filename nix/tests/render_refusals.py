"""Each bad setting the modules refuse (nix/eval-modules.nix's badLogsSettings,
badBackupsSettings and badSafetySettings), `keyfleet render` refuses too: exit 2, naming the key, or for a
schedule (a parse error of the TOML) saying what is wrong with it. check-eval.py's part."""

import os
import subprocess

# What render's error must say, per case.
EXPECTED = {
    "log": {
        "budgetBelowTwoSegments": "`logs.max_local_bytes`",
        "tinySegments": "`logs.rotate.max_size`",
        "zeroMaxAge": "`logs.rotate.max_age`",
        "smallParts": "`logs.s3.part_size`",
        "bucketName": "`logs.s3.bucket`",
        "endpointWithPath": "`logs.s3.endpoint`",
        "prefixSlashes": "`logs.s3.prefix`",
        "region": "`logs.s3.region`",
        "engineLogfile": "`engine.settings.logfile`",
    },
    "backup": {
        "fleetName": "`backups.fleet`",
        "zeroBgsaveTimeout": "`backups.bgsave_timeout`",
        "keepLastZero": "`backups.keep_last`",
        "shortKeepWithin": "`backups.keep_within`",
        "scheduleWord": 'expected "every 6h"',
        "shortPeriod": "the period must be at least 10s",
        "timeOfDay": "is not a time of day HH:MM",
        "bucketName": "`backups.s3.bucket`",
        "sharedStoreWithoutLogs": "`backups.s3`",
    },
    "safety": {
        "fastCanary": "`safety.canary_interval`",
        "lagBelowInterval": "`safety.lag_threshold`",
        "shortSkewInterval": "`safety.skew_interval`",
        "zeroSkewThreshold": "`safety.skew_threshold`",
        "partialOrder": "`safety.atomic_writes_order`",
        "strangerInOrder": "`safety.atomic_writes_order[3]`",
    },
    "upgrade": {
        "shortGate": "`upgrades.gate_timeout`",
        "settleAsLongAsGate": "`upgrades.gate_settle`",
        "shortLease": "`upgrades.lease_ttl`",
        "partialOrder": "`upgrades.order`",
        "strangerInOrder": "`upgrades.order[3]`",
    },
}


def render_refuses(kind, cases, write_toml, problems):
    """Runs `keyfleet render` on each case's TOML; prints what passes, appends problems."""
    says = EXPECTED[kind]
    for case, settings in sorted(cases.items()):
        if case not in says:
            problems.append(f"bad {kind} setting {case}: nothing expected from keyfleet render (add it to EXPECTED)")
            continue
        out = subprocess.run(
            [os.environ["KEYFLEET"], "render", "keydb-conf", "--config", write_toml(settings)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 2 or says[case] not in out.stderr:
            problems.append(
                f"bad {kind} setting {case}: keyfleet render should exit 2 saying {says[case]},"
                f" got {out.returncode}: {out.stderr.strip()}"
            )
        else:
            print(f"bad {kind} setting {case}: keyfleet render refuses it too ({' '.join(out.stderr.split())})")
