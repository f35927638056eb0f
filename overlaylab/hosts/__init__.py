"""The hosts the lab runs on, behind one interface (``base.HostTransport``) with two transports.

- ``base``: the ``HostTransport`` interface, one method per verb the components run on a host.
- ``member``: one etcd member's lifecycle (found, join, leave), over each transport's seat.
- ``netns``: ``NamespaceHost``, a host as a network namespace on this machine, and the bridge
  and namespace lifecycle; ``netns_daemons``: its etcd and dockerd as plain processes.
- ``systemd``: ``SystemdHost``, a real host whose etcd and Docker are systemd units;
  ``systemd_files``: what it writes there (backups, drop-ins, apt) and Docker's store wait.
- shared by both: ``proc`` (processes, logging), ``versions`` (Docker/etcd version rules),
  ``pki`` (certificates and TLS flags), ``etcdcheck`` (data-dir ownership, the health gate),
  ``dockerd`` (dockerd facts: serf, the node key, the Engine API), ``image`` (the busybox
  image), ``identity`` (the SSH key file).

``overlaylab.hostops`` is the command line over all of this; it is also where a transport is
chosen from the placement flags (``hostops.make_host``). Everything that ``SystemdHost`` needs
imports only the standard library: the package is copied to real hosts and run by their
python3.
"""
