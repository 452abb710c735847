# The systemd sandboxing both keyfleet services share, as nixpkgs' redis module sets it:
# they only talk over sockets and read their own state and credentials. Each service
# adds what differs (MemoryDenyWriteExecute, the system call filter, /proc access).
{
  CapabilityBoundingSet = "";
  NoNewPrivileges = true;
  ProtectSystem = "strict";
  ProtectHome = true;
  PrivateTmp = true;
  PrivateDevices = true;
  ProtectClock = true;
  ProtectHostname = true;
  ProtectKernelLogs = true;
  ProtectKernelModules = true;
  ProtectKernelTunables = true;
  ProtectControlGroups = true;
  RestrictAddressFamilies = [
    "AF_INET"
    "AF_INET6"
    "AF_UNIX"
  ];
  RestrictNamespaces = true;
  LockPersonality = true;
  RestrictRealtime = true;
  RestrictSUIDSGID = true;
  PrivateMounts = true;
  SystemCallArchitectures = "native";
}
